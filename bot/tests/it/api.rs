//! The structured entry points for form-and-button platforms: a whole form submitted with
//! per-field errors or the job back, votes by job id, the approval view, and inventory
//! choices narrowed to a host.

use super::*;
use aetherv_bot::engine::FormOutcome;
use aetherv_core::approval::Decision;
use aetherv_core::command::DeployForm;
use aetherv_core::{Event, EventBody, JobId};
use serde_json::{json, Map, Value};

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[tokio::test]
async fn a_form_is_refused_invalid_or_submitted_and_voted_on_by_job_id() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let mut e = engine(&b, policy(1, 3600), &["hv01"]);
    let good = fields(json!({"vm_name": "web01", "target_host": "hv01", "gb_ram": "2"}));

    let out = e
        .submit_form(&Principal::console("eve"), DeployForm::Vm, &good)
        .await
        .expect("engine");
    assert_eq!(out, FormOutcome::Refused { role: "operator" });

    let bad = fields(json!({"vm_name": "web01", "target_host": "hv01", "gb_ram": "0"}));
    let FormOutcome::Invalid(errors) = e
        .submit_form(&Principal::console("alice"), DeployForm::Vm, &bad)
        .await
        .expect("engine")
    else {
        panic!("invalid form accepted");
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "gb_ram");
    assert!(e.jobs().is_empty(), "no job for an invalid form");

    let FormOutcome::Submitted { job: Some(job), .. } = e
        .submit_form(&Principal::console("alice"), DeployForm::Vm, &good)
        .await
        .expect("engine")
    else {
        panic!("valid form not submitted");
    };
    let view = e.approval_view(job).expect("awaits approval");
    assert_eq!(view.fields["vm_name"], "web01");
    assert_eq!(view.requester, "alice");

    // Self-approval is refused and decides nothing; an approver decides.
    let r = e
        .vote(&Principal::console("alice"), job, true, None)
        .await
        .expect("engine");
    assert_eq!(r.decision, None);
    assert!(!r.changed, "a refused self-approval changes nothing");
    let r = e
        .vote(&Principal::console("eve"), job, true, None)
        .await
        .expect("engine");
    assert_eq!(r.decision, None, "a reader cannot vote");
    assert!(!r.changed);
    let r = e
        .vote(&Principal::console("bob"), job, true, None)
        .await
        .expect("engine");
    assert!(
        matches!(&r.decision, Some(Decision::Approved { by }) if by[0].user_id == "bob"),
        "{r:?}"
    );
    assert!(r.changed, "a counted vote changes the request");
    let again = e
        .vote(&Principal::console("bob"), job, true, None)
        .await
        .expect("engine");
    assert!(
        !again.changed,
        "a vote on a decided request changes nothing"
    );
    assert_eq!(e.decision(job), r.decision);
    assert!(e.decision(JobId::new()).is_none());
}

#[tokio::test]
async fn form_choices_narrow_to_the_chosen_host() {
    let b = broker();
    let mut e = engine(&b, Policy::default(), &["hv01", "hv02"]);
    for (host, net) in [("hv01", "lan01"), ("hv02", "dmz02")] {
        let ev = Event {
            job_id: None,
            ..Event::for_job(
                JobId::new(),
                0,
                EventBody::HostInventory {
                    host: host.into(),
                    reachable: true,
                    inventory: json!({"host": {"networks": [{"name": net}]}, "vms": []}),
                    error: None,
                },
            )
        };
        e.handle_event(&ev, tokio::time::Instant::now());
    }
    let all = e.form_choices(None);
    assert_eq!(all.networks, Some(vec!["dmz02".into(), "lan01".into()]));
    assert_eq!(
        e.form_choices(Some("HV02")).networks,
        Some(vec!["dmz02".into()])
    );
    assert_eq!(e.form_choices(Some("hv09")), all);
}
