//! `aetherv validate FILE [--form F]` (in progress).
use std::process::ExitCode;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Request file (JSON or YAML), or `-` for stdin.
    pub file: String,
}

/// Runs the command.
pub fn run(_args: Args) -> ExitCode {
    ExitCode::from(2)
}
