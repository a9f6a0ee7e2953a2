//! The page's rendering from a view made here: what it shows, and that user input stays text.

use super::html::{esc, fragment, login, page};
use super::view::*;

fn job(id: &str, kind: &str, who: &str) -> JobRef {
    JobRef {
        id: id.into(),
        short: short(id),
        kind: kind.into(),
        requester: who.into(),
        step: None,
    }
}

fn sample() -> StatusView {
    let running = JobRef {
        step: Some("2/5 disk.create".into()),
        ..job(
            "0b1c2d3e-0000-4000-8000-000000000001",
            "deployment.managed",
            "api:ci",
        )
    };
    StatusView {
        user: "api:ci".into(),
        generated_at: "2026-12-06T21:30:00Z".into(),
        hosts: vec![
            HostView {
                name: "hv01".into(),
                state: "up".into(),
                error: None,
                free_memory_gb: Some(120),
                total_memory_gb: Some(128),
                vms: vec![VmLine {
                    name: "<script>alert(1)</script>".into(),
                    state: "Running".into(),
                    memory_gb: 8,
                }],
                running: Some(running.clone()),
                queue: vec![
                    QueuedLine {
                        position: 1,
                        job: job("1a2b3c4d-0000-4000-8000-000000000002", "vm.create", "alice"),
                    },
                    QueuedLine {
                        position: 2,
                        job: job("2a2b3c4d-0000-4000-8000-000000000003", "disk.create", "bob"),
                    },
                ],
            },
            HostView {
                name: "hv02".into(),
                state: "unreachable".into(),
                error: Some("connection refused".into()),
                ..HostView::default()
            },
        ],
        approvals: vec![ApprovalLine {
            job: job("3a2b3c4d-0000-4000-8000-000000000004", "vm.delete", "carol"),
            target: "hv01".into(),
            rule: "two-person-delete".into(),
            missing: 1,
            required: 2,
            groups: vec!["ops-leads".into()],
            approved_by: vec!["bob".into()],
            expires_at: "2026-12-06T22:30:00Z".into(),
        }],
        jobs: vec![JobLine {
            job: running,
            target: "hv01".into(),
            state: "running".into(),
            created_at: Some("2026-12-06T21:29:00Z".into()),
            log: vec![
                "creating VM web-01".into(),
                "</pre><img src=x onerror=alert(2)>".into(),
            ],
            log_after: 17,
            live: true,
        }],
    }
}

#[test]
fn the_page_shows_hosts_slots_queues_approvals_and_logs() {
    let html = page(&sample());
    for needle in [
        "data-host=\"hv01\"",
        "120 GB free of 128 GB",
        "class=\"running-job\" data-job=\"0b1c2d3e-0000-4000-8000-000000000001\"",
        "<span class=\"step\">2/5 disk.create</span>",
        "data-position=\"1\"><span class=\"position\">queued #1</span> <code>1a2b3c4d</code> vm.create",
        "data-position=\"2\"><span class=\"position\">queued #2</span> <code>2a2b3c4d</code> disk.create",
        "connection refused",
        "<td class=\"missing\">1 of 2 from ops-leads</td>",
        "<td>bob</td>",
        "data-log-after=\"17\"",
        "creating VM web-01\n",
        "<script src=\"/status/static/status.js\"></script>",
    ] {
        assert!(html.contains(needle), "missing {needle:?} in\n{html}");
    }
}

#[test]
fn user_input_is_text_never_markup() {
    let html = page(&sample());
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;/pre&gt;&lt;img src=x onerror=alert(2)&gt;"));
    // The only script is the page's own file; there is no inline script or style.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(!html.contains("style="));
    assert_eq!(
        esc(r#"a"b'c<d>&"#),
        "a&quot;b&#39;c&lt;d&gt;&amp;",
        "attribute values are safe too"
    );
}

#[test]
fn an_empty_site_says_so() {
    let v = StatusView {
        user: "reader".into(),
        generated_at: "now".into(),
        ..StatusView::default()
    };
    let html = fragment(&v);
    assert!(html.contains("No hosts known yet."));
    assert!(html.contains("Nothing waits for a vote."));
    assert!(html.contains("No jobs yet."));
}

#[test]
fn the_sign_in_form_escapes_its_message() {
    let html = login(Some("<b>no</b>"), false);
    assert!(html.contains("&lt;b&gt;no&lt;/b&gt;"));
    assert!(html.contains("type=\"password\" id=\"token\" name=\"token\""));
    assert!(!html.contains("oidc-login"));
    assert!(login(None, true).contains("href=\"/login/oidc\""));
}
