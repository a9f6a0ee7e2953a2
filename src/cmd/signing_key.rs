//! `aetherv signing-key FILE`: makes a bot's job-signing key. The key text goes to FILE
//! (owner-only), for the bot's `AETHERV_SIGNING_KEY_FILE`; the public key is printed, for the
//! workers' `job_signing_keys`.
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Where the key is written (must not exist).
    pub file: PathBuf,
    /// The key id (default `bot-` and a random suffix).
    #[arg(long)]
    pub id: Option<String>,
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    let id = args
        .id
        .unwrap_or_else(|| format!("bot-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let key = match aetherv_core::signing::SigningKey::generate(&id) {
        Ok(k) => k,
        Err(e) => return crate::cmd::fail("signing-key", 64, e),
    };
    if let Err(e) = write_private(&args.file, key.to_text().as_bytes()) {
        return crate::cmd::fail("signing-key", 1, format!("{}: {e}", args.file.display()));
    }
    println!("{}", key.public_text());
    ExitCode::SUCCESS
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}
