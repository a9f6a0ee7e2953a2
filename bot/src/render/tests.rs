use super::*;
use crate::reply::*;
use aetherv_core::approval::Decision;
use aetherv_core::{JobId, Platform, Requester};
use serde_json::json;

fn r() -> Renderer {
    Renderer::console().expect("templates compile")
}

fn job() -> JobId {
    "1a2b3c4d-0000-4000-8000-000000000000"
        .parse()
        .expect("uuid")
}

fn text(reply: &Reply) -> String {
    r().text(reply).expect("a text reply")
}

fn who(id: &str) -> Requester {
    Requester {
        platform: Platform::Console,
        user_id: id.into(),
    }
}

/// The sample VM (hv01, web01, 5f1c, Running, 2 vCPU, 4 GB).
fn vm() -> VmRow {
    Reply::samples()
        .into_iter()
        .find_map(|r| match r {
            Reply::Listing(Listing::Vm(vm)) => Some(vm.row),
            _ => None,
        })
        .expect("a sample VM")
}

fn approval() -> ApprovalView {
    let fields = serde_json::from_value(json!({"vm_name": "web01", "admin_password": "••••••"}))
        .unwrap_or_default();
    ApprovalView {
        short: "1a2b3c4d".into(),
        rule: "everything".into(),
        required: 2,
        groups: "approvers".into(),
        expires_at: "2026-01-01T00:00:00Z".into(),
        requester: "alice".into(),
        kind: "vm.create".into(),
        target: "hv01".into(),
        fields,
    }
}

fn decided(decision: Decision) -> Reply {
    Reply::ApprovalDecided {
        job: job(),
        view: approval(),
        decision,
        cancelled: false,
    }
}

fn finished(outcome: Outcome) -> Reply {
    Reply::JobFinished {
        job: job(),
        short: "1a2b3c4d".into(),
        kind: "vm.create".into(),
        target: "hv01".into(),
        outcome,
        log: Some(LogFile {
            name: "job-1a2b3c4d.log".into(),
            lines: 10,
            content: String::new(),
        }),
    }
}

fn notice(user: &str, message: &str) -> Reply {
    Reply::Notice {
        user: user.into(),
        message: message.into(),
    }
}

fn parse_error(message: &str, usage: Option<&str>) -> Reply {
    Reply::ParseError {
        user: "bob".into(),
        message: message.into(),
        usage: usage.map(String::from),
    }
}

fn thread_text(content: &ThreadContent) -> String {
    let (name, data) = content.text_view();
    r().render(name, &data)
}

fn status(
    state: &str,
    step: Option<StepView>,
    queue_position: Option<usize>,
    percent: u32,
) -> ThreadContent {
    ThreadContent::Status(StatusView {
        short: "1a2b3c4d".into(),
        kind: if step.is_some() {
            "deployment.managed"
        } else {
            "vm.create"
        }
        .into(),
        target: "hv01".into(),
        state: state.into(),
        step,
        queue_position,
        percent,
    })
}

#[test]
fn help_and_refusals() {
    insta::assert_snapshot!(
        "help",
        text(&Reply::Help {
            user: "alice".into(),
            commands: vec!["vm list [--host H]".into(), "help".into()]
        })
    );
    insta::assert_snapshot!(
        "refused",
        text(&Reply::Refused {
            user: "bob".into(),
            command: "deploy".into(),
            role: "operator".into()
        })
    );
    insta::assert_snapshot!(
        "parse_error",
        text(&parse_error("missing NAME", Some("vm show NAME")))
    );
    insta::assert_snapshot!(
        "parse_error_no_usage",
        text(&parse_error("unknown command: frob", None))
    );
    let error = |field: &str, message: &str| FieldErrorView {
        field: field.into(),
        code: "invalid".into(),
        message: message.into(),
    };
    insta::assert_snapshot!(
        "form_errors",
        text(&Reply::FormErrors {
            user: "alice".into(),
            form: "vm".into(),
            errors: vec![
                error("cpu_cores", "must be between 1 and 64"),
                error("target_host", "choose one of hv01, hv02")
            ]
        })
    );
    insta::assert_snapshot!("notice", text(&notice("alice", "no such job")));
}

#[test]
fn approvals() {
    insta::assert_snapshot!(
        "approval_request",
        text(&Reply::ApprovalRequested {
            job: job(),
            view: approval(),
            restored: false
        })
    );
    insta::assert_snapshot!(
        "vote_counted",
        text(&Reply::VoteCounted {
            job: job(),
            short: "1a2b3c4d".into(),
            voter: "bob".into(),
            granted: 1,
            required: 2
        })
    );
    insta::assert_snapshot!(
        "approved",
        text(&decided(Decision::Approved {
            by: vec![who("bob"), who("carol")]
        }))
    );
    insta::assert_snapshot!(
        "rejected",
        text(&decided(Decision::Rejected {
            by: who("carol"),
            reason: Some("too big".into())
        }))
    );
    insta::assert_snapshot!(
        "rejected_no_reason",
        text(&decided(Decision::Rejected {
            by: who("carol"),
            reason: None
        }))
    );
    insta::assert_snapshot!("expired", text(&decided(Decision::Expired)));
    insta::assert_snapshot!(
        "vote_refused",
        text(&Reply::VoteRefused {
            job: Some(job()),
            user: "alice".into(),
            message: "you cannot approve your own request".into()
        })
    );
}

#[test]
fn job_thread_messages() {
    insta::assert_snapshot!(
        "job_status_queued",
        thread_text(&status("queued", None, Some(2), 0))
    );
    insta::assert_snapshot!(
        "job_status_running",
        thread_text(&status(
            "running",
            Some(StepView {
                index: 2,
                total: 4,
                name: "disk.create".into()
            }),
            None,
            25
        ))
    );
    insta::assert_snapshot!(
        "job_log",
        thread_text(&ThreadContent::Log {
            part: 3,
            lines: vec!["Creating VM web01".into(), "done".into()]
        })
    );
    let res =
        serde_json::from_value(json!({"vm_id": "5f1c", "vm_name": "web01"})).unwrap_or_default();
    insta::assert_snapshot!(
        "job_succeeded",
        text(&finished(Outcome::Succeeded { resources: res }))
    );
    insta::assert_snapshot!(
        "job_failed",
        text(&finished(Outcome::Failed {
            step: Some("vm.create".into()),
            code: "name_conflict".into(),
            message: "exists".into()
        }))
    );
    let cancelled = finished(Outcome::Cancelled {
        by: Some("alice".into()),
    });
    insta::assert_snapshot!("job_cancelled", text(&cancelled));
    let (name, data) = cancelled.attachment_view().expect("a log");
    insta::assert_snapshot!("attachment", r().render(name, &data));
}

#[test]
fn inventory_views() {
    let list = |host: Option<&str>, vms| {
        text(&Reply::Listing(Listing::Vms {
            host: host.map(String::from),
            vms,
        }))
    };
    insta::assert_snapshot!("vm_list", list(None, vec![vm()]));
    insta::assert_snapshot!("vm_list_empty", list(Some("hv02"), vec![]));
    insta::assert_snapshot!(
        "vm_show",
        text(&Reply::Listing(Listing::Vm(VmView {
            row: vm(),
            disks: Vec::new(),
            nics: Vec::new(),
            addresses: Vec::new(),
            inventoried: true,
        })))
    );
    insta::assert_snapshot!(
        "vm_show_before_inventory",
        text(&Reply::Listing(Listing::Vm(VmView {
            row: vm(),
            disks: Vec::new(),
            nics: Vec::new(),
            addresses: Vec::new(),
            inventoried: false,
        })))
    );
    let host = |name: &str, status: &str, vms, running: Option<&str>, queued| HostRow {
        name: name.into(),
        status: status.into(),
        vms,
        running: running.map(String::from),
        queued,
    };
    insta::assert_snapshot!(
        "hosts",
        text(&Reply::Listing(Listing::Hosts(vec![
            host("hv01", "up", 1, Some("1a2b3c4d"), 2),
            host("hv02", "unreachable", 0, None, 0)
        ])))
    );
    insta::assert_snapshot!("hosts_empty", text(&Reply::Listing(Listing::Hosts(vec![]))));
    insta::assert_snapshot!(
        "jobs",
        text(&Reply::Listing(Listing::Jobs {
            jobs: vec![JobRow {
                short: "1a2b3c4d".into(),
                kind: "vm.create".into(),
                target: "hv01".into(),
                state: "succeeded".into(),
                requester: "alice".into(),
                created: "2026-05-01 14:03Z".into(),
            }],
            more: 0
        }))
    );
    insta::assert_snapshot!(
        "jobs_cut",
        text(&Reply::Listing(Listing::Jobs {
            jobs: vec![JobRow {
                short: "1a2b3c4d".into(),
                kind: "vm.create".into(),
                target: "hv01".into(),
                state: "succeeded".into(),
                requester: "alice".into(),
                created: String::new(),
            }],
            more: 12
        }))
    );
    insta::assert_snapshot!(
        "jobs_empty",
        text(&Reply::Listing(Listing::Jobs {
            jobs: vec![],
            more: 0
        }))
    );
}

#[test]
fn every_template_compiles_strict() {
    assert_eq!(CONSOLE_TEMPLATES.len(), 26);
    assert_eq!(r().templates().len(), CONSOLE_TEMPLATES.len());
}

#[test]
fn an_override_replaces_one_file_and_a_broken_one_names_its_file() {
    let dir = std::env::temp_dir().join(format!("aetherv-tpl-{}", uuid::Uuid::new_v4().simple()));
    let console = dir.join("console");
    std::fs::create_dir_all(&console).expect("dir");
    std::fs::write(console.join("notice.hbs"), "NOTE for {{user}}: {{message}}").expect("write");
    let r = Renderer::load("console", CONSOLE_TEMPLATES, Some(&dir)).expect("loads");
    assert_eq!(
        r.text(&notice("alice", "hi")).as_deref(),
        Some("NOTE for alice: hi")
    );
    // The others stay built in.
    assert!(r
        .templates()
        .origin("help")
        .starts_with("built-in console/help.hbs"));
    // A template that uses a value replies do not have fails at start, naming the file.
    std::fs::write(
        console.join("hosts.hbs"),
        "{{#each hosts}}{{nonsense}}{{/each}}",
    )
    .expect("write");
    let err = Renderer::load("console", CONSOLE_TEMPLATES, Some(&dir)).expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("console/hosts.hbs") && msg.contains("does not render"),
        "{msg}"
    );
    std::fs::write(console.join("hosts.hbs"), "{{#each hosts}").expect("write");
    let err = Renderer::load("console", CONSOLE_TEMPLATES, Some(&dir)).expect_err("refused");
    assert!(err.to_string().contains("console/hosts.hbs"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
