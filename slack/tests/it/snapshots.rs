//! insta snapshots of every Block Kit payload the bot sends: the modals (main and parameter-set
//! views), the inline-error response, and each message builder, with fixed inputs.

use aetherv_bot::reply::{ApprovalView, StatusView, StepView};
use aetherv_core::approval::Decision;
use aetherv_core::schema::Forms;
use aetherv_core::validate::{ErrorCode, FieldError, InventoryChoices};
use aetherv_core::{JobId, Platform, Requester};
use aetherv_slack::blocks::{check_message, check_modal, Blocks};
use aetherv_slack::messages;
use aetherv_slack::modal::{self, ViewMeta};
use serde_json::{json, Value};

fn b() -> Blocks {
    Blocks::builtin().expect("templates")
}

fn job() -> JobId {
    "1a2b3c4d-0000-4000-8000-000000000000"
        .parse()
        .expect("uuid")
}

fn view() -> ApprovalView {
    ApprovalView {
        short: "1a2b3c4d".into(),
        rule: "everything".into(),
        required: 1,
        groups: "approvers".into(),
        expires_at: "2026-01-01T00:00:00Z".into(),
        requester: "U0ALICE".into(),
        kind: "deployment.managed".into(),
        target: "hv01".into(),
        fields: serde_json::from_value(json!({"vm_name": "web01", "gb_ram": 4,
            "guest_la_pw": "••••••", "notes": "a <b> & c"}))
        .unwrap_or_default(),
    }
}

fn u(id: &str) -> Requester {
    Requester {
        platform: Platform::Slack,
        user_id: id.into(),
    }
}

fn msg(v: Value) -> Value {
    check_message(&v).expect("within limits");
    v
}

#[test]
fn message_payloads() {
    let b = b();
    insta::assert_json_snapshot!(
        "reply",
        msg(messages::reply(&b, "hv01  up  2 VM(s)  0 queued"))
    );
    insta::assert_json_snapshot!(
        "thread_root",
        msg(messages::thread_root(
            &b,
            "1a2b3c4d",
            "vm.create",
            "hv01",
            "U0ALICE"
        ))
    );
    insta::assert_json_snapshot!(
        "approval_request",
        msg(messages::approval_request(&b, &view(), "U0ALICE", job()))
    );
    insta::assert_json_snapshot!(
        "approval_approved",
        msg(messages::approval_decided(
            &b,
            &view(),
            &Decision::Approved {
                by: vec![u("U0BOB")]
            }
        ))
    );
    insta::assert_json_snapshot!(
        "approval_rejected",
        msg(messages::approval_decided(
            &b,
            &view(),
            &Decision::Rejected {
                by: u("U0CAROL"),
                reason: Some("too big".into())
            }
        ))
    );
    insta::assert_json_snapshot!(
        "approval_expired",
        msg(messages::approval_decided(&b, &view(), &Decision::Expired))
    );
    insta::assert_json_snapshot!(
        "job_status",
        msg(messages::job_status(
            &b,
            "Job 1a2b3c4d · vm.create on hv01 · running · step 1 of 4: vm.create\n[#####---------------] 25%",
            &StatusView {
                short: "1a2b3c4d".into(),
                kind: "vm.create".into(),
                target: "hv01".into(),
                state: "running".into(),
                step: Some(StepView {
                    index: 1,
                    total: 4,
                    name: "vm.create".into(),
                }),
                queue_position: None,
                percent: 25,
            }
        ))
    );
    insta::assert_json_snapshot!(
        "job_log",
        msg(messages::job_log(
            &b,
            2,
            "log 2:\nCreating VM 'web01' <x> & y\nVM created"
        ))
    );
    insta::assert_json_snapshot!(
        "thread_note",
        msg(messages::thread_note(
            &b,
            "✔ Job 1a2b3c4d succeeded (vm.create on hv01).\n  vm_id: 5f1c"
        ))
    );
    insta::assert_json_snapshot!(
        "not_in_channel",
        msg(messages::not_in_channel(
            &b,
            "No VMs on hv01 <yet> & none queued"
        ))
    );
    insta::assert_snapshot!("form_refused", messages::form_refused(&b, "operator"));
    insta::assert_snapshot!(
        "ack_command",
        b.text("ack_command", &json!({"command": "vm list"}))
    );
    insta::assert_snapshot!(
        "ack_deploy",
        b.text("ack_deploy", &json!({"form": "Managed deployment"}))
    );
    insta::assert_snapshot!(
        "parse_error",
        b.text(
            "parse_error",
            &json!({"message": aetherv_slack::blocks::escape("`<!here>` is not expected here"),
                "usage": "vm list [--host H] [--state S]"})
        )
    );
}

fn choices() -> InventoryChoices {
    InventoryChoices {
        hosts: Some(vec!["hv01".into(), "hv02".into()]),
        networks: Some(vec!["lan".into(), "dmz".into()]),
        storage_classes: Some(vec!["fast".into()]),
        ..Default::default()
    }
}

#[test]
fn modal_payloads() {
    let forms = Forms::builtin().expect("forms");
    let meta = |form: &str, set: Option<&str>| ViewMeta {
        form: form.into(),
        channel: "C0OPS".into(),
        set: set.map(str::to_string),
        host: None,
    };
    let vm = forms.get("vm").expect("vm");
    let v = modal::build(vm, &choices(), &meta("vm", None)).expect("vm modal");
    check_modal(&v).expect("limits");
    insta::assert_json_snapshot!("modal_vm", v);
    let md = forms.get("managed-deployment").expect("form");
    let v = modal::build(md, &choices(), &meta("managed-deployment", None)).expect("modal");
    check_modal(&v).expect("limits");
    insta::assert_json_snapshot!("modal_managed", v);
    for s in md.parameter_sets() {
        let v = modal::build(md, &choices(), &meta("managed-deployment", Some(&s.id)))
            .expect("set modal");
        check_modal(&v).expect("limits");
        insta::assert_json_snapshot!(format!("modal_managed_{}", s.id), v);
    }
    let errors = modal::inline_errors(
        vm,
        &meta("vm", None),
        &[FieldError {
            field: "gb_ram".into(),
            code: ErrorCode::OutOfRange,
            message: "must be between 1 and 512".into(),
        }],
    );
    insta::assert_json_snapshot!(
        "view_submission_errors",
        json!({"response_action": "errors", "errors": errors})
    );
}
