//! `aetherv worker --config FILE`: serves the configured hosts' queues until SIGTERM/SIGINT.
use crate::cmd::{amqp_url, env_lookup, health, topology};
use aetherv_broker::Broker;
use aetherv_worker::{Worker, WorkerConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Worker configuration (YAML); `AETHERV_*` variables override it.
    #[arg(long, env = "AETHERV_WORKER_CONFIG")]
    pub config: PathBuf,
}

/// Loads a worker configuration for command `cmd`: the file, the environment over it, its
/// checks, and the Kerberos keytab installed (before the runtime starts any thread: MIT reads
/// the client keytab from the environment). Errors are said on stderr (exit code 64).
pub fn load_config(cmd: &str, path: &std::path::Path) -> Result<WorkerConfig, ExitCode> {
    let unified = crate::cmd::config::Unified::load(path, &env_lookup)
        .map_err(|e| crate::cmd::fail(cmd, 64, e))?;
    let loaded = match unified {
        Some(u) => u
            .worker_json(&env_lookup)
            .map_err(|e| crate::cmd::fail(cmd, 64, e))
            .and_then(|v| {
                WorkerConfig::from_json(v).map_err(|e| {
                    crate::cmd::fail(cmd, 64, format!("{}: worker: {e}", path.display()))
                })
            })?,
        None => WorkerConfig::load(path)
            .map_err(|e| crate::cmd::fail(cmd, 64, aetherv_core::error_chain(&e)))?,
    };
    let mut cfg = loaded;
    cfg.apply_env(env_lookup);
    cfg.check().map_err(|e| crate::cmd::fail(cmd, 64, e))?;
    aetherv_worker::install_kerberos_keytab(&cfg).map_err(|e| crate::cmd::fail(cmd, 64, e))?;
    Ok(cfg)
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    let Args { config } = args;
    let cfg = match load_config("worker", &config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::cmd::block_on(async move {
        let url = crate::cmd::with_env_addresses(cfg.amqp_url.clone().unwrap_or_else(amqp_url));
        let broker = match connect_with_retry(&url, &cfg.prefix).await {
            Some(b) => b,
            None => return ExitCode::from(1),
        };
        let worker = match Worker::new(&cfg, broker.clone(), &env_lookup) {
            Ok(w) => w,
            Err(e) => return crate::cmd::fail("worker", 64, e),
        };
        let quiet = CancellationToken::new();
        tokio::spawn(crate::cmd::signal::on_shutdown(quiet.clone()));
        let health_stop = CancellationToken::new();
        let _stop_health = health_stop.clone().drop_guard();
        let ready = health::worker_ready(broker.clone(), worker.slots(), cfg.hosts.len());
        let health = match health::start(ready, health_stop).await {
            Ok(h) => h,
            Err(e) => return crate::cmd::fail("worker", 64, e),
        };
        let hosts: Vec<&str> = cfg.hosts.iter().map(|h| h.name.as_str()).collect();
        tracing::info!(
            target: "aetherv::start",
            worker = %cfg.worker_id(),
            hosts = %hosts.join(","),
            prefix = %cfg.prefix,
            broker = %redact_url(&url),
            signed_jobs_only = !cfg.job_signing_keys.is_empty(),
            %health,
            "aetherv worker serving {} host(s): {}; health: {health}",
            hosts.len(),
            hosts.join(", "),
        );
        match worker.run(quiet).await {
            Ok(stop) => {
                broker.close().await;
                if !stop.drained {
                    eprintln!(
                        "aetherv worker: stopped; unfinished jobs were returned to their queues"
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("aetherv worker: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}

/// Connects to the broker, retrying with backoff until it answers (logs each failure).
pub async fn connect_with_retry(url: &str, prefix: &str) -> Option<Broker> {
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=40u32 {
        match Broker::connect(url, topology(prefix)).await {
            Ok(b) => return Some(b),
            Err(e) => {
                tracing::warn!(attempt, error = %aetherv_core::error_chain(&e), "broker not reachable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    eprintln!("aetherv: RabbitMQ is not reachable at {}", redact_url(url));
    None
}

/// The URL (or comma-separated URLs) without passwords, for messages.
pub fn redact_url(url: &str) -> String {
    let mut urls: Vec<String> = Vec::new();
    for piece in url.split(',') {
        let starts = {
            let p = piece.trim_start().to_ascii_lowercase();
            p.starts_with("amqp://") || p.starts_with("amqps://")
        };
        match urls.last_mut() {
            // A comma inside a password: still the previous URL.
            Some(last) if !starts => {
                last.push(',');
                last.push_str(piece);
            }
            _ => urls.push(piece.to_string()),
        }
    }
    urls.iter()
        .map(|u| redact_one(u.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn every_url_of_a_list_loses_its_password_and_none_is_dropped() {
        assert_eq!(
            redact_url("amqp://bot:s3cret@a:5672/%2f, amqp://bot:s,3cret@b:5672/%2f"),
            "amqp://bot:***@a:5672/%2f,amqp://bot:***@b:5672/%2f"
        );
        assert_eq!(
            redact_url("amqp://bot:s3cret@a/%2f"),
            "amqp://bot:***@a/%2f"
        );
        assert_eq!(redact_url("amqp://a/%2f"), "amqp://a/%2f");
    }
}
