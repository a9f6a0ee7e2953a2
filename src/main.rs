//! The `aetherv` binary: a short composition root. Each subcommand lives in `cmd/`.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Aether-V ChatOps: provision and manage Hyper-V VMs from chat.
#[derive(Parser)]
#[command(name = "aetherv", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a request (JSON or YAML; `-` for stdin) against a form schema.
    Validate(cmd::validate::Args),
    /// JSON Schema operations.
    #[command(subcommand)]
    Schema(cmd::schema::SchemaCommand),
    /// Print the exact PowerShell command line the worker sends for an agent operation.
    AgentCommand(cmd::agent_command::Args),
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => cmd::validate::run(args),
        Command::Schema(c) => cmd::schema::run(c),
        Command::AgentCommand(args) => cmd::agent_command::run(args),
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AETHERV_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
