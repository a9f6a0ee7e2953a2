//! `aetherv submit FILE [--follow]`: an AMQP producer through the gate. Sends the job as a
//! request to `<prefix>.requests` (as the URL's RabbitMQ user, with a private reply queue and a
//! correlation id): the bot validates it, checks it against the hosts' inventory, roles and
//! policy, and replies. Prints the accepted job id as the last word, or the rejection with
//! every field error (exit 1); a request that waits for approval is said so. With `--follow`,
//! waits for the approval's outcome and prints the job's events until it ends (exit 0 on
//! success, 1 otherwise).
//!
//! `--direct` publishes the completed envelope straight to the jobs exchange instead, for a
//! site without a bot (the `aetherv sim` + `aetherv worker` backbone of the README and its
//! tests); workers that verify job signatures dead-letter such a job as `unsigned`.
mod producer;

use crate::cmd::{amqp_url, read_input, topology};
use aetherv_broker::{Broker, PublishError, StreamOffset};
use aetherv_core::contract::request::{JobRequest, ReplyStatus, RequestReply};
use aetherv_core::{EventBody, JobEnvelope, JobId};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Job file (JSON or YAML) with at least `kind`, `target` and `spec`; `-` for stdin.
    pub file: String,
    /// Print the job's events until it ends.
    #[arg(long)]
    pub follow: bool,
    /// Give up following after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Topology prefix.
    #[arg(long, env = "AETHERV_PREFIX", default_value = "aetherv")]
    pub prefix: String,
    /// Publish straight to the jobs exchange, bypassing the bot's gate (a site without a bot;
    /// needs write access to `<prefix>.jobs`).
    #[arg(long)]
    pub direct: bool,
    /// The workers' age recipients (`age1…`, comma-separated). Secret fields found in the
    /// job's `spec` are sealed to them into `secrets` before publishing.
    #[arg(
        long = "age-recipients",
        env = "AETHERV_AGE_RECIPIENTS",
        default_value = ""
    )]
    pub age_recipients: String,
}

/// Moves the secret fields of `envelope.spec` into its sealed `secrets` field
/// ([`JobEnvelope::seal_secrets`]); an error when there are secrets to seal but no recipient,
/// or secrets both sealed and in plaintext. Recipients are parsed only when there is something
/// to seal.
pub fn seal_secrets(envelope: &mut JobEnvelope, recipients: &str) -> Result<(), String> {
    use aetherv_core::secrets::{parse_recipients, SealError};
    if envelope.plaintext_secret_fields().is_empty() || envelope.secrets.is_some() {
        return envelope.seal_secrets(&[]).map_err(|e| e.to_string());
    }
    let recipients = parse_recipients(recipients).map_err(|e| e.to_string())?;
    envelope.seal_secrets(&recipients).map_err(|e| match e {
        SealError::NoRecipients { fields } => format!(
            "the spec holds secret fields ({}); set AETHERV_AGE_RECIPIENTS (or \
                 --age-recipients) to the workers' age public keys so they can be sealed",
            fields.join(", ")
        ),
        other => other.to_string(),
    })
}

/// Completes a partial job document into an envelope value.
pub fn complete(mut doc: Value) -> Result<Value, String> {
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| "the job file must hold a mapping".to_string())?;
    obj.entry("v").or_insert(json!(1));
    obj.entry("job_id")
        .or_insert_with(|| json!(uuid::Uuid::new_v4().to_string()));
    obj.entry("created_at")
        .or_insert_with(|| json!(chrono::Utc::now().to_rfc3339()));
    obj.entry("spec").or_insert_with(|| json!({}));
    let user = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    obj.entry("requested_by")
        .or_insert_with(|| json!({"platform": "amqp", "user_id": user}));
    // `target: hv01` is shorthand for `target: {host: hv01}`.
    if let Some(Value::String(h)) = obj.get("target") {
        let h = h.clone();
        obj.insert("target".into(), json!({ "host": h }));
    }
    Ok(doc)
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    let doc = match read_input(&args.file) {
        Ok(v) => v,
        Err(e) => return crate::cmd::fail("submit", 2, e),
    };
    let envelope = match complete(doc).and_then(|v| {
        let mut env = JobEnvelope::from_slice(&serde_json::to_vec(&v).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let unknown = aetherv_core::ops::unknown_fields(env.kind.fields(), &env.spec);
        if !unknown.is_empty() {
            eprintln!(
                "aetherv submit: warning: the worker does not read field(s) {} of a {} job",
                unknown.join(", "),
                env.kind
            );
        }
        seal_secrets(&mut env, &args.age_recipients)?;
        Ok(env)
    }) {
        Ok(e) => e,
        Err(e) => return crate::cmd::fail("submit", 2, e),
    };
    if !args.direct {
        return crate::cmd::block_on(async move {
            let request = JobRequest {
                v: 1,
                job_id: Some(envelope.job_id),
                kind: envelope.kind,
                target: envelope.target.clone(),
                spec: envelope.spec.clone(),
                secrets: envelope.secrets.clone(),
            };
            through_gate(
                &amqp_url(),
                &args.prefix,
                &request,
                args.follow,
                Duration::from_secs(args.timeout),
            )
            .await
        });
    }
    crate::cmd::block_on(async move {
        let url = amqp_url();
        let broker = match Broker::connect(&url, topology(&args.prefix)).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!(
                    "aetherv submit: cannot connect to RabbitMQ at {}: {}",
                    crate::cmd::worker::redact_url(&url),
                    aetherv_core::error_chain(&e)
                );
                return ExitCode::from(1);
            }
        };
        let code = submit(
            &broker,
            &envelope,
            args.follow,
            Duration::from_secs(args.timeout),
        )
        .await;
        broker.close().await;
        code
    })
}

async fn submit(
    broker: &Broker,
    envelope: &JobEnvelope,
    follow: bool,
    timeout: Duration,
) -> ExitCode {
    // Subscribe before publishing so no event is missed.
    let stream = if follow {
        let from = StreamOffset::Timestamp(chrono::Utc::now() - chrono::Duration::seconds(5));
        match broker.replay_events(from).await {
            Ok(s) => Some(s),
            Err(e) => {
                return crate::cmd::fail(
                    "submit",
                    1,
                    format!(
                        "cannot read the event stream: {}",
                        aetherv_core::error_chain(&e)
                    ),
                )
            }
        }
    } else {
        None
    };
    match broker.publish_job(envelope).await {
        Ok(()) => {}
        Err(PublishError::Unroutable { routing_key }) => {
            eprintln!(
                "aetherv submit: no worker queue for target {routing_key:?} (unknown host?); the job was not queued"
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            return crate::cmd::fail(
                "submit",
                1,
                format!("publish failed: {}", aetherv_core::error_chain(&e)),
            )
        }
    }
    let Some(mut stream) = stream else {
        println!("submitted {} job {}", envelope.kind, envelope.job_id);
        return ExitCode::SUCCESS;
    };
    println!("submitted {} job {}", envelope.kind, envelope.job_id);
    let follow = async {
        while let Some((_, ev)) = stream.next().await {
            if ev.job_id != Some(envelope.job_id) {
                continue;
            }
            print_event(&ev.body);
            if let Some(ok) = outcome(&ev.body) {
                return Some(ok);
            }
        }
        None
    };
    report(
        envelope.job_id,
        tokio::time::timeout(timeout, follow).await.ok(),
        timeout,
    )
}

/// How a request ended, short of its job's events.
enum Settled {
    /// The job was published (accepted without approval, or approved).
    Runs(JobId),
    /// Accepted, waiting for approval (and not followed).
    Waits,
    /// Refused, rejected or expired: exit 1.
    Refused,
}

/// The request path: publish, print the replies until the request is settled, then follow.
async fn through_gate(
    url: &str,
    prefix: &str,
    request: &JobRequest,
    follow: bool,
    timeout: Duration,
) -> ExitCode {
    let user = producer::url_user(url);
    let redacted = crate::cmd::worker::redact_url(url);
    let mut p = match producer::Producer::connect(url, prefix).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("aetherv submit: RabbitMQ at {redacted}: {e}");
            return ExitCode::from(1);
        }
    };
    // Subscribe before publishing so no event is missed.
    let mut feed = None;
    if follow {
        match p.events().await {
            Ok(f) => feed = Some(f),
            Err(e) => {
                p.close().await;
                return crate::cmd::fail("submit", 1, e);
            }
        }
    }
    let correlation_id = uuid::Uuid::new_v4().to_string();
    if let Err(e) = p.publish(request, &user, &correlation_id).await {
        p.close().await;
        return crate::cmd::fail("submit", 1, e);
    }
    let settled = tokio::time::timeout(timeout, settle(&mut p, &correlation_id, follow)).await;
    let code = match (settled, feed) {
        (Err(_), _) => {
            eprintln!("aetherv submit: no answer from the bot within {timeout:?}");
            ExitCode::from(1)
        }
        (Ok(Err(e)), _) => crate::cmd::fail("submit", 1, e),
        (Ok(Ok(Settled::Refused)), _) => ExitCode::from(1),
        (Ok(Ok(Settled::Waits)), _) => ExitCode::SUCCESS,
        (Ok(Ok(Settled::Runs(_))), None) => ExitCode::SUCCESS,
        (Ok(Ok(Settled::Runs(job_id))), Some(mut feed)) => {
            let events = async {
                while let Some(ev) = feed.next().await {
                    if ev.job_id == Some(job_id) {
                        print_event(&ev.body);
                        if let Some(ok) = outcome(&ev.body) {
                            return Some(ok);
                        }
                    }
                }
                None
            };
            report(
                job_id,
                tokio::time::timeout(timeout, events).await.ok(),
                timeout,
            )
        }
    };
    p.close().await;
    code
}

/// Prints the replies to the request until it is settled.
async fn settle(
    p: &mut producer::Producer,
    correlation_id: &str,
    follow: bool,
) -> Result<Settled, String> {
    loop {
        let reply: RequestReply = match p.reply(correlation_id).await {
            Some(r) => r?,
            None => return Err("the reply queue closed before the bot answered".into()),
        };
        let job = reply.job_id;
        match (reply.status, job) {
            (ReplyStatus::Accepted, Some(id)) if reply.awaiting_approval => {
                println!("accepted, awaiting approval: job {id}");
                if !follow {
                    return Ok(Settled::Waits);
                }
            }
            (ReplyStatus::Accepted, Some(id)) => {
                println!("accepted: job {id}");
                return Ok(Settled::Runs(id));
            }
            (ReplyStatus::Approved, Some(id)) => {
                let by = reply.by.as_ref().map(by_whom).unwrap_or_default();
                println!("approved{by}: job {id}");
                return Ok(Settled::Runs(id));
            }
            (ReplyStatus::Rejected, _) => {
                eprintln!("aetherv submit: the request was refused:");
                for e in &reply.errors {
                    let field = if e.field.is_empty() {
                        "(request)"
                    } else {
                        &e.field
                    };
                    eprintln!("  {field} ({}): {}", e.code, e.message);
                }
                println!("rejected");
                return Ok(Settled::Refused);
            }
            (ReplyStatus::ApprovalRejected, _) => {
                let by = reply.by.as_ref().map(by_whom).unwrap_or_default();
                let why = reply.reason.map(|r| format!(": {r}")).unwrap_or_default();
                eprintln!("aetherv submit: the approval was rejected{by}{why}");
                println!("approval rejected");
                return Ok(Settled::Refused);
            }
            (ReplyStatus::ApprovalExpired, _) => {
                eprintln!("aetherv submit: nobody decided before the approval expired");
                println!("approval expired");
                return Ok(Settled::Refused);
            }
            (status, None) => {
                return Err(format!("a {} reply without a job id", status.as_str()));
            }
        }
    }
}

/// ` by slack:U…` for a decision's approver.
fn by_whom(r: &aetherv_core::Requester) -> String {
    let platform = serde_json::to_value(r.platform)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    format!(" by {platform}:{}", r.user_id)
}

/// Whether a terminal event means success (`None` while the job goes on).
fn outcome(body: &EventBody) -> Option<bool> {
    match body {
        EventBody::JobSucceeded { .. } => Some(true),
        EventBody::JobFailed { .. } | EventBody::JobCancelled { .. } => Some(false),
        _ => None,
    }
}

/// The exit of a followed job; the job id is the last word printed.
fn report(job_id: JobId, followed: Option<Option<bool>>, timeout: Duration) -> ExitCode {
    match followed {
        Some(Some(true)) => {
            println!("job succeeded: {job_id}");
            ExitCode::SUCCESS
        }
        Some(Some(false)) => {
            println!("job failed: {job_id}");
            ExitCode::from(1)
        }
        Some(None) => {
            eprintln!("aetherv submit: event stream ended before the job did");
            println!("job unknown: {job_id}");
            ExitCode::from(1)
        }
        None => {
            eprintln!("aetherv submit: gave up following after {timeout:?}");
            println!("job unknown: {job_id}");
            ExitCode::from(1)
        }
    }
}

fn print_event(body: &EventBody) {
    match body {
        EventBody::JobLog { lines } => {
            for l in lines {
                println!("  | {}", l.text);
            }
        }
        other => {
            let v = serde_json::to_value(other).unwrap_or(Value::Null);
            let payload = v.get("payload").cloned().unwrap_or(Value::Null);
            println!("{} {}", other.type_name(), payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_a_minimal_job() {
        let v = complete(json!({"kind": "noop", "target": "HV01"})).expect("completes");
        let env = JobEnvelope::from_slice(&serde_json::to_vec(&v).expect("ser")).expect("valid");
        assert_eq!(env.target.routing_key(), "hv01");
        assert_eq!(env.requested_by.platform, aetherv_core::Platform::Amqp);
    }

    #[test]
    fn secret_fields_are_sealed_or_refused() {
        let doc = json!({"kind": "vm.initialize", "target": "hv01",
            "spec": {"vm_name": "a", "guest_la_uid": "admin", "guest_la_pw": "Pw-123456!"}});
        let v = complete(doc).expect("completes");
        let env = JobEnvelope::from_slice(&serde_json::to_vec(&v).expect("ser")).expect("valid");
        let e = seal_secrets(&mut env.clone(), "").expect_err("no recipients");
        assert!(
            e.contains("guest_la_pw") && !e.contains("Pw-123456!"),
            "{e}"
        );
        let id = aetherv_core::secrets::generate_identity();
        let mut sealed = env.clone();
        seal_secrets(&mut sealed, &id.to_public().to_string()).expect("sealed");
        assert!(!sealed.spec.contains_key("guest_la_pw"));
        let wire = String::from_utf8(sealed.to_vec()).expect("utf-8");
        assert!(!wire.contains("Pw-123456!"));
        let opened = aetherv_core::secrets::open(sealed.secrets.as_deref().expect("some"), &id)
            .expect("open");
        assert_eq!(opened["guest_la_pw"], "Pw-123456!");
        let mut both = env;
        both.secrets = sealed.secrets.clone();
        assert!(seal_secrets(&mut both, &id.to_public().to_string()).is_err());
    }

    #[test]
    fn keeps_given_ids() {
        let id = "5f0c6c1e-8d7e-4e55-9b1a-3f9a1f3e2b10";
        let v = complete(json!({"kind": "noop", "target": {"cluster": "c"}, "job_id": id}))
            .expect("ok");
        assert_eq!(v["job_id"], id);
        assert_eq!(v["target"], json!({"cluster": "c"}));
    }
}
