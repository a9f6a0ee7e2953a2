//! Issue 16, finding 1: names that reach a path on the host are plain Hyper-V names in every form.

use super::forms;
use aetherv_core::validate::{check_field, ErrorCode, ValidationContext};
use serde_json::json;

const TRAVERSAL: &[&str] = &[
    "..\\..\\..\\Windows\\Temp\\evil",
    "../../etc/evil",
    "..",
    "C:\\evil",
    "nul",
    "web-01.",
];

#[test]
fn every_vm_name_field_is_a_path_name_and_refuses_traversal() {
    let ctx = ValidationContext::default();
    let mut seen = 0;
    for form in forms().iter() {
        let Some(field) = form.field("vm_name") else {
            continue;
        };
        seen += 1;
        assert!(field.path_name, "{}: vm_name is not a path_name", form.id());
        for bad in TRAVERSAL {
            let e = check_field(form, "vm_name", &json!(bad), &ctx)
                .expect_err(&format!("{}: {bad:?} passed", form.id()));
            assert_eq!(e.code, ErrorCode::Pattern, "{}: {bad:?}", form.id());
            assert!(
                bad.len() < 4 || !e.message.contains(bad),
                "{}: the message repeats the value: {}",
                form.id(),
                e.message
            );
        }
        let ok = check_field(form, "vm_name", &json!("web-01"), &ctx);
        assert!(matches!(ok, Ok(Some(_))), "{}: {ok:?}", form.id());
    }
    assert!(seen >= 2, "the vm and managed-deployment forms have vm_name");
}
