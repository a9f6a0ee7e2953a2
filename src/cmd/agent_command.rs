//! `aetherv agent-command --operation OP --spec JSON`: prints the exact command line the worker
//! sends to a host for one agent operation.
use aetherv_core::contract::command::{agent_command_line, DEFAULT_INSTALL_DIR};
use aetherv_core::{AgentOperation, AgentRequest};
use std::process::ExitCode;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Agent operation (`noop`, `vm.create`, `host.inventory`, ...).
    #[arg(long)]
    pub operation: String,
    /// Operation spec as a JSON object.
    #[arg(long, default_value = "{}")]
    pub spec: String,
    /// Correlation id (defaults to a fresh UUID).
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// Idempotency key (`<job_id>:<step>`).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Agent install directory on the host.
    #[arg(long, default_value = DEFAULT_INSTALL_DIR)]
    pub install_dir: String,
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    let Some(op) = AgentOperation::parse(&args.operation) else {
        let names: Vec<_> = AgentOperation::ALL.iter().map(|o| o.as_str()).collect();
        eprintln!(
            "aetherv agent-command: unknown operation {:?} (one of: {})",
            args.operation,
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let spec = match serde_json::from_str::<serde_json::Value>(&args.spec) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(_) => {
            eprintln!("aetherv agent-command: --spec must be a JSON object");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("aetherv agent-command: --spec is not valid JSON: {e}");
            return ExitCode::from(2);
        }
    };
    let unknown = aetherv_core::ops::unknown_fields(op.fields(), &spec);
    if !unknown.is_empty() {
        eprintln!(
            "aetherv agent-command: warning: {op} ignores field(s) {}",
            unknown.join(", ")
        );
    }
    let cid = args
        .correlation_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut req = AgentRequest::new(op, spec, cid);
    req.idempotency_key = args.idempotency_key;
    println!("{}", agent_command_line(&req, &args.install_dir));
    ExitCode::SUCCESS
}
