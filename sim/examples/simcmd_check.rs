//! Temporary compile check of src/cmd/sim.rs.
#[path = "../../src/cmd/sim.rs"]
mod sim_cmd;
use clap::Parser;
/// Cli.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: sim_cmd::Args,
}
fn main() -> std::process::ExitCode {
    sim_cmd::run(Cli::parse().args)
}
