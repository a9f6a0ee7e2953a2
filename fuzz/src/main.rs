//! `aetherv-fuzz [--seconds N] [--inputs N] [--seed N] [--target NAME] [--save DIR]`: fuzzes
//! every target (or one) for a bounded time each, prints the inputs tried per target and
//! what it found, saves crashing and hanging inputs under `DIR/<target>/`, and exits 1 when
//! anything was found.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seconds: f64 = value("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let inputs: u64 = value("--inputs")
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let seed: u64 = value("--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let only = value("--target");
    let save = value("--save");
    let mut found = false;
    for t in aetherv_fuzz::targets::all() {
        if only.as_deref().is_some_and(|o| o != t.name) {
            continue;
        }
        let r = aetherv_fuzz::fuzz(&t, Duration::from_secs_f64(seconds), inputs, seed);
        println!(
            "{:<20} {:>9} inputs  {} crashes  {} hangs",
            t.name,
            r.tried,
            r.crashes.len(),
            r.hangs.len()
        );
        for (input, msg) in &r.crashes {
            println!("  crash: {msg} ({} bytes)", input.len());
        }
        if let Some(dir) = &save {
            let dir = std::path::Path::new(dir).join(t.name);
            let all = r.crashes.iter().map(|(i, _)| i).chain(r.hangs.iter());
            for (n, input) in all.enumerate() {
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(dir.join(format!("found-{seed}-{n}")), input);
            }
        }
        found |= !r.crashes.is_empty() || !r.hangs.is_empty();
    }
    if found {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
