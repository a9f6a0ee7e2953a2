//! `aetherv schema export DIR`: writes the JSON Schemas of every message.
use std::path::PathBuf;
use std::process::ExitCode;

/// Schema subcommands.
#[derive(clap::Subcommand)]
pub enum SchemaCommand {
    /// Write the JSON Schemas of the job envelope, event and agent messages into DIR.
    Export {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
}

/// Runs the command.
pub fn run(cmd: SchemaCommand) -> ExitCode {
    match cmd {
        SchemaCommand::Export { dir } => match export(&dir) {
            Ok(n) => {
                println!("wrote {n} schemas to {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("aetherv schema export: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

/// Writes every schema; returns how many were written.
pub fn export(dir: &std::path::Path) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let schemas = aetherv_core::contract::json_schemas();
    for (name, schema) in &schemas {
        let path = dir.join(name);
        let mut text = serde_json::to_string_pretty(schema)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(schemas.len())
}
