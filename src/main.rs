//! The `aetherv` binary: a short composition root. Each subcommand lives in `cmd/`.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Aether-V ChatOps: provision and manage Hyper-V VMs from chat.
#[derive(Parser)]
#[command(name = "aetherv", version, about)]
struct Cli {
    /// Log lines as text (default) or as one JSON object per line (with `job_id`, `host`
    /// and `step` on every line of a job). The level is `AETHERV_LOG` (default `warn`).
    #[arg(long, global = true, value_enum, env = "AETHERV_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Serve `/healthz`, `/readyz` and `/metrics` on this address (`worker`, `bot`, `slack`,
    /// `discord`), e.g. `0.0.0.0:9090`.
    #[arg(
        long,
        global = true,
        env = "AETHERV_HEALTH_LISTEN",
        value_name = "ADDR"
    )]
    health_listen: Option<String>,
    #[command(subcommand)]
    command: Sub,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Sub {
    /// Validate a request (JSON or YAML; `-` for stdin) against a form schema.
    Validate(cmd::validate::Args),
    /// JSON Schema operations.
    #[command(subcommand)]
    Schema(cmd::schema::SchemaCommand),
    /// Print the exact PowerShell command line the worker sends for an agent operation.
    AgentCommand(cmd::agent_command::Args),
    /// Run a worker: serve the configured Hyper-V hosts' job queues.
    Worker(cmd::worker::Args),
    /// Publish a job to RabbitMQ (an AMQP producer); `--follow` prints its events.
    Submit(cmd::submit::Args),
    /// Serve simulated Hyper-V hosts over WinRM (for tests and the demo).
    Sim(cmd::sim::Args),
    /// The whole system in one process: broker, simulated hosts, worker and the console chat.
    Demo(cmd::demo::Args),
    /// The chat bot with the console adapter, against RabbitMQ.
    Bot(cmd::bot::Args),
    /// Per configured host: reachable, authentication, agent version, current or not.
    Hosts(cmd::hosts::Args),
    /// The chat bot on Slack (Socket Mode or the HTTP Events API), against RabbitMQ.
    Slack(cmd::slack::Args),
    /// The chat bot on Discord (the HTTP interactions endpoint), against RabbitMQ.
    Discord(cmd::discord::Args),
    /// The configuration file (`aetherv.yaml`): `config check FILE`.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// The HTTP API (with the console chat for approvals): `--config aetherv.yaml` or `--simulated N`.
    Api(cmd::api::Args),
    /// Make a bot's job-signing key (Ed25519): the key to a file, the public key printed.
    SigningKey(cmd::signing_key::Args),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Err(code) = cmd::config::preload(&args) {
        return code;
    }
    let cli = Cli::parse();
    // Flags, then the environment, then an aetherv.yaml's `log` and `health` sections.
    let log_format =
        cli.log_format
            .unwrap_or_else(|| match cmd::env_lookup("AETHERV_LOG_FORMAT").as_deref() {
                Some("json") => LogFormat::Json,
                _ => LogFormat::Text,
            });
    init_tracing(log_format);
    cmd::health::set_listen(
        cli.health_listen
            .or_else(|| cmd::env_lookup("AETHERV_HEALTH_LISTEN")),
    );
    // One TLS crypto provider for the whole process (ring), before any TLS client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Sub::Validate(args) => cmd::validate::run(args),
        Sub::Schema(c) => cmd::schema::run(c),
        Sub::AgentCommand(args) => cmd::agent_command::run(args),
        Sub::Worker(args) => cmd::worker::run(args),
        Sub::Submit(args) => cmd::submit::run(args),
        Sub::Sim(args) => cmd::sim::run(args),
        Sub::Demo(args) => cmd::demo::run(args),
        Sub::Bot(args) => cmd::bot::run(args),
        Sub::Hosts(args) => cmd::hosts::run(args),
        Sub::Slack(args) => cmd::slack::run(&args),
        Sub::Discord(args) => cmd::discord::run(&args),
        Sub::SigningKey(args) => cmd::signing_key::run(args),
        Sub::Api(args) => cmd::api::run(args),
        Sub::Config(c) => cmd::config::run(c),
    }
}

/// Warnings and errors, and the line each serving command logs at start.
const DEFAULT_LOG_FILTER: &str = "warn,aetherv::start=info";

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = cmd::env_lookup("AETHERV_LOG")
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_LOG_FILTER));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.init(),
        // The event's fields at the top level; the innermost span's fields (a job's `job_id`,
        // `host`, `kind`, `step`) under `span`.
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
