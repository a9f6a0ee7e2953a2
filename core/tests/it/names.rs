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
    assert!(
        seen >= 2,
        "the vm and managed-deployment forms have vm_name"
    );
}

/// The embedded agent script `name`.
fn agent_script(name: &str) -> String {
    let bundle = aetherv_core::bundle::Bundle::embedded();
    let file = bundle
        .files()
        .iter()
        .find(|f| f.name == name)
        .expect("embedded script");
    String::from_utf8_lossy(&file.content).into_owned()
}

/// The text of PowerShell function `name` in `src` (up to the next top-level function).
fn function<'a>(src: &'a str, name: &str) -> &'a str {
    let start = src
        .find(&format!("function {name} {{"))
        .expect("function exists");
    let rest = &src[start + 1..];
    let end = rest
        .find("\nfunction ")
        .map_or(src.len(), |i| start + 1 + i);
    &src[start..end]
}

/// Findings 1 and 5 in the agent (no PowerShell runs here, so the scripts are read): the
/// agent checks every name it joins into a path itself, before any cmdlet creates something,
/// and names a blank disk after the request instead of the clock.
#[test]
fn the_agent_checks_names_before_joining_paths_and_names_disks_after_the_request() {
    let common = agent_script("AethervAgent.Common.ps1");
    let assert = function(&common, "Assert-AethervPathName");
    for rule in ["'..'", "Length -gt 100", "CON|PRN|AUX|NUL", "IndexOfAny"] {
        assert!(assert.contains(rule), "Assert-AethervPathName lacks {rule}");
    }
    let join = function(&common, "Join-AethervChildPath");
    assert!(join.contains("Assert-AethervPathName") && join.contains("GetFullPath"));
    assert!(
        join.contains(".StartsWith($base"),
        "the joined path stays under its root"
    );

    let vm = agent_script("AethervAgent.Vm.ps1");
    let create = function(&vm, "Invoke-AethervVmCreate");
    let checked = create
        .find("Assert-AethervPathName -Name $name")
        .expect("vm_name checked");
    let created = create.find("New-VM ").expect("New-VM");
    assert!(checked < created, "vm_name is checked before New-VM");
    assert!(create.contains("Join-AethervChildPath -Root $base -Name $name"));
    assert!(
        !create.contains("$base + '\\' + $name"),
        "no unchecked join"
    );

    let disk = agent_script("AethervAgent.Disk.ps1");
    let create = function(&disk, "Invoke-AethervDiskCreate");
    assert!(
        !create.contains("Get-Date"),
        "disk names do not come from the clock"
    );
    assert!(create.contains("Get-AethervDiskStem -VmName $vm.Name"));
    assert!(create.contains("$path = Join-AethervChildPath -Root $dir -Name $file"));
    let stem = function(&common, "Get-AethervDiskStem");
    assert!(stem.contains("SHA256") && stem.contains("Substring(0, 12)"));
    let entry = agent_script("Invoke-AethervAgent.ps1");
    assert!(entry.contains("$script:AethervRequestKey = $key"));
}
