//! One module per subcommand. Each exposes `Args` (clap) and `run(args) -> ExitCode`; shared
//! glue (environment, input files, runtime) lives here.

pub mod agent_command;
pub mod api;
pub mod bot;
pub mod chat;
pub mod config;
pub mod demo;
pub mod discord;
pub mod health;
pub mod hosts;
pub mod schema;
pub mod signal;
pub mod signing_key;
pub mod sim;
pub mod slack;
pub mod submit;
pub mod validate;
pub mod worker;

use std::process::ExitCode;

/// Default AMQP URL when `AETHERV_AMQP_URL` is not set.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Environment lookup (the one place the binary reads the process environment for config).
pub fn env_lookup(key: &str) -> Option<String> {
    std::env::var(key).ok().or_else(|| {
        FILE_ENV
            .get()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
}

/// Settings an `aetherv.yaml` gives as environment defaults (see [`config::preload`]): read by
/// [`env_lookup`] after the real environment, which wins.
static FILE_ENV: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// `AETHERV_AMQP_URL` (one URL, or several comma-separated: the nodes of a cluster, tried in
/// turn), or the local default; with `AETHERV_AMQP_ADDRESSES` (`host:port,…`, or
/// `broker.addresses` of an `aetherv.yaml`), one URL per address (see [`with_env_addresses`]).
pub fn amqp_url() -> String {
    with_env_addresses(
        env_lookup("AETHERV_AMQP_URL")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_AMQP_URL.to_string()),
    )
}

/// `url` with its host and port replaced by each of `AETHERV_AMQP_ADDRESSES` (`host:port`,
/// comma-separated), when set: the URL gives scheme, credentials and vhost. An address list
/// that is not `host:port` is reported and `url` kept.
pub fn with_env_addresses(url: String) -> String {
    let Some(list) = env_lookup("AETHERV_AMQP_ADDRESSES").filter(|s| !s.trim().is_empty()) else {
        return url;
    };
    let addresses: Vec<String> = list.split(',').map(|a| a.trim().to_string()).collect();
    match config::with_addresses(&url, &addresses) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("aetherv: AETHERV_AMQP_ADDRESSES: {e}; using the broker URL alone");
            url
        }
    }
}

/// The template override directory: the configured one, else `AETHERV_TEMPLATES`.
pub fn templates_dir(configured: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    configured.map(std::path::Path::to_path_buf).or_else(|| {
        env_lookup(aetherv_bot::render::TEMPLATES_ENV)
            .filter(|s| !s.is_empty())
            .map(Into::into)
    })
}

/// The broker topology for a prefix.
pub fn topology(prefix: &str) -> aetherv_broker::Topology {
    aetherv_broker::Topology::new(prefix)
}

/// A multi-threaded tokio runtime, or exit code 1 with a message.
pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("aetherv: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

/// Runs `f` on a new multi-threaded runtime; exit code 1 when the runtime cannot start.
///
/// Once `f` is done the process exits within [`RUNTIME_SHUTDOWN`]: a blocking read that never
/// returns (tokio's stdin, read on a blocking thread, when the console bot stops on an error)
/// must not keep a stopped command alive.
pub fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match runtime() {
        Ok(rt) => {
            let code = rt.block_on(f);
            rt.shutdown_timeout(RUNTIME_SHUTDOWN);
            code
        }
        Err(code) => code,
    }
}

/// How long a finished command waits for the runtime's remaining blocking threads.
pub const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

/// Says `aetherv CMD: ERROR` on stderr and gives exit code `code`.
pub fn fail(cmd: &str, code: u8, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("aetherv {cmd}: {e}");
    ExitCode::from(code)
}

/// Reads a JSON or YAML document from a file, or stdin for `-`. The error is one line.
pub fn read_input(path: &str) -> Result<serde_json::Value, String> {
    use std::io::Read as _;
    let text = if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
    };
    parse_document(&text).map_err(|e| {
        if path == "-" {
            format!("stdin: {e}")
        } else {
            format!("{path}: {e}")
        }
    })
}

/// Parses JSON, or YAML when the text is not JSON.
pub fn parse_document(text: &str) -> Result<serde_json::Value, String> {
    if text.trim().is_empty() {
        return Err("empty document".into());
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let looks_like_json = matches!(text.trim_start().chars().next(), Some('{') | Some('['));
            if looks_like_json {
                return Err(format!("invalid JSON: {json_err}"));
            }
            serde_saphyr::from_str::<serde_json::Value>(text).map_err(|e| {
                format!(
                    "invalid YAML: {}",
                    e.to_string().lines().next().unwrap_or("")
                )
            })
        }
    }
}

/// A fresh job-signing key for this run (demo, simulated sites).
pub fn run_signing_key() -> Result<std::sync::Arc<aetherv_core::signing::SigningKey>, String> {
    let id = format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    aetherv_core::signing::SigningKey::generate(&id)
        .map(std::sync::Arc::new)
        .map_err(|e| format!("job-signing key: {e}"))
}

/// The bot's job-signing key from the file named by `AETHERV_SIGNING_KEY_FILE`
/// (`aetherv-sign-1:…`, made by `aetherv signing-key`); `None` when unset.
pub fn configured_signing_key(
) -> Result<Option<std::sync::Arc<aetherv_core::signing::SigningKey>>, String> {
    let Some(path) = env_lookup("AETHERV_SIGNING_KEY_FILE").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    aetherv_core::signing::SigningKey::parse(&text)
        .map(|k| Some(std::sync::Arc::new(k)))
        .map_err(|e| format!("{path}: {e}"))
}
