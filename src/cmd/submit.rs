//! `aetherv submit FILE [--follow]`: an AMQP producer. Fills in `v`, `job_id`, `created_at` and
//! `requested_by` when absent, publishes with confirms, prints the job id as the last word; with
//! `--follow`, prints the job's events until it ends (exit 0 on success, 1 on failure).
use crate::cmd::{amqp_url, read_input, topology};
use aetherv_broker::{Broker, PublishError, StreamOffset};
use aetherv_core::{EventBody, JobEnvelope};
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
            match &ev.body {
                EventBody::JobSucceeded { .. } => return Some(true),
                EventBody::JobFailed { .. } | EventBody::JobCancelled { .. } => return Some(false),
                _ => {}
            }
        }
        None
    };
    match tokio::time::timeout(timeout, follow).await {
        Ok(Some(true)) => {
            println!("job succeeded: {}", envelope.job_id);
            ExitCode::SUCCESS
        }
        Ok(Some(false)) => {
            println!("job failed: {}", envelope.job_id);
            ExitCode::from(1)
        }
        Ok(None) => {
            eprintln!("aetherv submit: event stream ended before the job did");
            println!("job unknown: {}", envelope.job_id);
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("aetherv submit: gave up following after {timeout:?}");
            println!("job unknown: {}", envelope.job_id);
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
