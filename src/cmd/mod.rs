//! One module per subcommand. Each exposes `Args` (clap) and `run(args) -> ExitCode`.

pub mod agent_command;
pub mod schema;
pub mod validate;
