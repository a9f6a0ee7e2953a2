//! Contract tests: round trips, version checks, and the checked-in JSON Schemas (stale check and
//! validation of real examples and malformed envelopes with an independent validator).

use super::*;
use crate::contract::agent::{AgentOperation, AgentRequest, AgentResult};
use crate::contract::event::{Event, EventBody, LogLine, LogStream};
use crate::contract::job::{JobEnvelope, JobKind, Origin, Platform, Requester, Target};
use crate::ids::JobId;
use serde_json::{json, Value};

fn envelope() -> JobEnvelope {
    let mut spec = serde_json::Map::new();
    spec.insert("vm_name".into(), json!("web-01"));
    spec.insert("gb_ram".into(), json!(4));
    JobEnvelope {
        v: CONTRACT_VERSION,
        job_id: JobId::new(),
        kind: JobKind::DeploymentManaged,
        target: Target::Host("hv01".into()),
        spec,
        secrets: Some("-----BEGIN AGE ENCRYPTED FILE-----\n...".into()),
        requested_by: Requester {
            platform: Platform::Slack,
            user_id: "U024BE7LH".into(),
        },
        origin: Some(Origin {
            platform: Platform::Slack,
            channel: "C0123".into(),
            thread: Some("1700000000.000100".into()),
        }),
        created_at: chrono::Utc::now(),
        approval: None,
    }
}

fn schema(name: &str) -> Value {
    json_schemas()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s)
        .expect("schema exists")
}

fn validator(name: &str) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema(name))
        .expect("schema compiles")
}

#[test]
fn envelope_round_trips() {
    let e = envelope();
    assert_eq!(JobEnvelope::from_slice(&e.to_vec()), Ok(e));
}

#[test]
fn envelope_wire_shape_is_stable() {
    let v: Value = serde_json::from_slice(&envelope().to_vec()).expect("json");
    assert_eq!(v["v"], 1);
    assert_eq!(v["kind"], "deployment.managed");
    assert_eq!(v["target"], json!({"host": "hv01"}));
    assert_eq!(v["requested_by"]["platform"], "slack");
}

#[test]
fn unknown_version_is_rejected_clearly() {
    let mut v: Value = serde_json::from_slice(&envelope().to_vec()).expect("json");
    v["v"] = json!(2);
    let err = JobEnvelope::from_slice(&serde_json::to_vec(&v).expect("ser")).expect_err("v2");
    assert_eq!(
        err,
        ContractError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
    assert_eq!(err.code(), "unsupported_version");
    assert!(err.to_string().contains("unsupported contract version 2"));
}

#[test]
fn missing_version_and_garbage_are_distinguished() {
    assert_eq!(
        JobEnvelope::from_slice(b"{\"kind\":\"noop\"}"),
        Err(ContractError::MissingVersion)
    );
    assert!(matches!(
        JobEnvelope::from_slice(b"not json"),
        Err(ContractError::NotJson(_))
    ));
    assert_eq!(
        JobEnvelope::from_slice(b"[1]"),
        Err(ContractError::NotAnObject)
    );
    let err = JobEnvelope::from_slice(b"{\"v\":1,\"kind\":\"noop\"}").expect_err("fields");
    assert_eq!(err.code(), "invalid_contract");
    assert!(err.to_string().contains("missing field"), "{err}");
}

#[test]
fn unknown_envelope_fields_are_rejected() {
    let mut v: Value = serde_json::from_slice(&envelope().to_vec()).expect("json");
    v["surprise"] = json!(true);
    let err = JobEnvelope::from_slice(&serde_json::to_vec(&v).expect("ser")).expect_err("unknown");
    assert!(err.to_string().contains("surprise"), "{err}");
}

/// Issue 16, finding 10: a valid but oversized envelope is `too_large`, not a host failure.
#[test]
fn oversized_envelopes_are_too_large() {
    let mut v: Value = serde_json::from_slice(&envelope().to_vec()).expect("json");
    v["spec"]["notes"] = json!("x".repeat(10 * 1024 * 1024));
    let body = serde_json::to_vec(&v).expect("ser");
    let err = JobEnvelope::from_slice(&body).expect_err("too large");
    assert_eq!(err.code(), "too_large");
    v["spec"]["notes"] = json!("x".repeat(1024));
    let body = serde_json::to_vec(&v).expect("ser");
    assert!(JobEnvelope::from_slice(&body).is_ok());
}

#[test]
fn events_round_trip_with_type_and_payload() {
    let id = JobId::new();
    let events = [
        Event::for_job(
            id,
            0,
            EventBody::JobStarted {
                host: "hv01".into(),
                worker: "w1".into(),
                attempt: 1,
            },
        ),
        Event::for_job(
            id,
            1,
            EventBody::JobLog {
                lines: vec![LogLine {
                    stream: LogStream::Stdout,
                    text: "hello".into(),
                }],
            },
        ),
        Event::for_job(id, 2, EventBody::ApprovalExpired {}),
        Event::for_job(
            id,
            0,
            EventBody::RequestAccepted {
                by: Requester {
                    platform: Platform::Amqp,
                    user_id: "ci".into(),
                },
                correlation_id: Some("c-1".into()),
                awaiting_approval: true,
            },
        ),
        Event::for_host(
            0,
            EventBody::RequestRejected {
                by: None,
                correlation_id: None,
                errors: vec![crate::contract::request::RequestError {
                    field: "user_id".into(),
                    code: "required".into(),
                    message: "m".into(),
                }],
            },
        ),
        Event::for_job(
            id,
            3,
            EventBody::JobFailed {
                code: "name_conflict".into(),
                message: "x".into(),
                step: Some("vm.create".into()),
            },
        ),
        Event::for_host(
            0,
            EventBody::HostInventory {
                host: "hv01".into(),
                reachable: false,
                inventory: Value::Null,
                error: Some("refused".into()),
            },
        ),
    ];
    for e in events {
        let wire: Value = serde_json::from_slice(&e.to_vec()).expect("json");
        assert_eq!(wire["type"], e.type_name());
        assert!(wire.get("payload").is_some());
        assert_eq!(Event::from_slice(&e.to_vec()).as_ref(), Ok(&e));
        let errors: Vec<String> = validator("event.schema.json")
            .iter_errors(&wire)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{} invalid: {errors:?}", e.type_name());
    }
}

#[test]
fn agent_result_line_is_found_among_logs() {
    let r = AgentResult::success("ok", json!({"vm_id": "x"}), "c1");
    let out = format!("Creating VM\n{{\"not\":\"the result\"}}\n{}\n", r.to_line());
    assert_eq!(AgentResult::from_output(&out), Ok(r.clone()));
    assert!(AgentResult::from_output("just logs\n").is_err());
    let twice = format!("{}\n{}\n", r.to_line(), r.to_line());
    assert!(AgentResult::from_output(&twice).is_err());
    let bad = format!(
        "{}{{\"v\":1,\"status\":\"weird\",\"message\":\"x\"}}",
        agent::RESULT_MARKER
    );
    assert!(AgentResult::from_output(&bad).is_err());
    let partial = format!(
        "{}{{\"v\":1,\"status\":\"partial\",\"message\":\"x\"}}",
        agent::RESULT_MARKER
    );
    assert!(AgentResult::from_output(&partial)
        .expect("partial ok")
        .is_ok());
    assert!(AgentResult::from_output(agent::RESULT_MARKER).is_err());
}

#[test]
fn agent_operations_have_unique_round_tripping_names() {
    for op in AgentOperation::ALL {
        assert_eq!(AgentOperation::parse(op.as_str()), Some(op));
        assert_eq!(serde_json::to_value(op).expect("ser"), json!(op.as_str()));
    }
    for k in JobKind::ALL {
        assert_eq!(serde_json::to_value(k).expect("ser"), json!(k.as_str()));
    }
}

#[test]
fn schemas_accept_real_examples() {
    let env: Value = serde_json::from_slice(&envelope().to_vec()).expect("json");
    assert!(validator("job-envelope.schema.json").is_valid(&env));
    let minimal = json!({
        "v": 1, "job_id": "5f0c6c1e-8d7e-4e55-9b1a-3f9a1f3e2b10", "kind": "noop",
        "target": {"cluster": "clu01"}, "spec": {},
        "requested_by": {"platform": "amqp", "user_id": "ci"},
        "created_at": "2026-11-21T10:00:00Z"
    });
    assert!(validator("job-envelope.schema.json").is_valid(&minimal));
    assert!(JobEnvelope::from_slice(&serde_json::to_vec(&minimal).expect("ser")).is_ok());
    let req = serde_json::to_value(AgentRequest::new(
        AgentOperation::Noop,
        Default::default(),
        "c",
    ))
    .expect("ser");
    assert!(validator("agent-request.schema.json").is_valid(&req));
    let res = serde_json::to_value(AgentResult::error("not_found", "no vm", "c")).expect("ser");
    assert!(validator("agent-result.schema.json").is_valid(&res));
}

#[test]
fn schemas_reject_malformed_envelopes() {
    let good: Value = serde_json::from_slice(&envelope().to_vec()).expect("json");
    let v = validator("job-envelope.schema.json");
    type Mutation = Box<dyn Fn(&mut Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "missing v",
            Box::new(|e: &mut Value| {
                e.as_object_mut().map(|o| o.remove("v"));
            }),
        ),
        ("v = 2", Box::new(|e: &mut Value| e["v"] = json!(2))),
        (
            "bad uuid",
            Box::new(|e: &mut Value| e["job_id"] = json!("not-a-uuid")),
        ),
        (
            "unknown kind",
            Box::new(|e: &mut Value| e["kind"] = json!("vm.explode")),
        ),
        (
            "two targets",
            Box::new(|e: &mut Value| e["target"] = json!({"host": "a", "cluster": "b"})),
        ),
        (
            "spec not object",
            Box::new(|e: &mut Value| e["spec"] = json!([1])),
        ),
        (
            "unknown field",
            Box::new(|e: &mut Value| e["extra"] = json!(1)),
        ),
        (
            "bad platform",
            Box::new(|e: &mut Value| e["requested_by"]["platform"] = json!("irc")),
        ),
        (
            "bad timestamp",
            Box::new(|e: &mut Value| e["created_at"] = json!("yesterday")),
        ),
    ];
    for (what, mutate) in mutations {
        let mut e = good.clone();
        mutate(&mut e);
        assert!(!v.is_valid(&e), "schema accepted an envelope with {what}");
        assert!(
            JobEnvelope::from_slice(&serde_json::to_vec(&e).expect("ser")).is_err(),
            "decoder accepted an envelope with {what}"
        );
    }
}

#[test]
fn checked_in_json_schemas_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/json");
    for (name, schema) in json_schemas() {
        let path = dir.join(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        let mut expected = serde_json::to_string_pretty(&schema).expect("ser");
        expected.push('\n');
        assert!(
            on_disk == expected,
            "{} is stale or missing: run `cargo run -- schema export schemas/json`",
            path.display()
        );
    }
}

#[test]
fn requests_and_replies_round_trip_and_match_their_schemas() {
    use crate::contract::request::{JobRequest, ReplyStatus, RequestReply};
    let body = br#"{"v":1,"kind":"vm.power","target":{"host":"hv01"},"spec":{"vm_name":"a"}}"#;
    let req = JobRequest::from_slice(body).expect("request");
    assert_eq!(req.kind, JobKind::VmPower);
    assert!(req.job_id.is_none());
    let with_approval = br#"{"v":1,"kind":"noop","target":{"host":"h"},"spec":{},"approval":{}}"#;
    assert!(JobRequest::from_slice(with_approval).is_err());
    let reply = RequestReply::new(ReplyStatus::Accepted, Some(crate::JobId::new()));
    let wire: Value = serde_json::from_slice(&reply.to_vec()).expect("json");
    assert_eq!(wire["status"], "accepted");
    let errors: Vec<String> = validator("request-reply.schema.json")
        .iter_errors(&wire)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let wire: Value = serde_json::from_slice(body).expect("json");
    assert!(validator("job-request.schema.json").is_valid(&wire));
}
