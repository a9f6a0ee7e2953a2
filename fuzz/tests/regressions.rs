//! Every input kept under `fuzz/regressions/<target>/` (inputs that once crashed or hung a
//! parser) runs through its target without a panic and in time; and a short run of every
//! target from a fixed seed finds nothing.

use std::time::Duration;

#[test]
fn kept_inputs_no_longer_crash() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut replayed = 0;
    for t in aetherv_fuzz::targets::all() {
        let Ok(dir) = std::fs::read_dir(root.join(t.name)) else {
            continue;
        };
        for entry in dir.flatten() {
            let input = std::fs::read(entry.path()).expect("kept input");
            let took = aetherv_fuzz::run_one(&t, &input)
                .unwrap_or_else(|msg| panic!("{}: {msg}", entry.path().display()));
            assert!(
                took < aetherv_fuzz::SLOW,
                "{} is slow",
                entry.path().display()
            );
            replayed += 1;
        }
    }
    println!("{replayed} kept inputs replayed");
}

#[test]
fn every_target_survives_a_short_run() {
    for t in aetherv_fuzz::targets::all() {
        let r = aetherv_fuzz::fuzz(&t, Duration::from_secs(2), 3000, 7);
        assert!(r.tried >= t.seeds.len() as u64, "{}", t.name);
        assert!(r.crashes.is_empty(), "{}: {:?}", t.name, r.crashes);
        assert!(r.hangs.is_empty(), "{}: {} hangs", t.name, r.hangs.len());
    }
}

#[test]
fn the_fuzzer_finds_a_planted_panic() {
    fn planted(b: &[u8]) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) {
            assert!(v["n"].as_i64().is_none_or(|n| n >= 0), "negative");
        }
    }
    let t = aetherv_fuzz::Target {
        name: "planted",
        seeds: vec![br#"{"n": 5, "s": "x"}"#.to_vec()],
        run: planted,
    };
    let r = aetherv_fuzz::fuzz(&t, Duration::from_secs(5), 200_000, 1);
    assert!(!r.crashes.is_empty(), "{} inputs, no crash found", r.tried);
    assert!(r.crashes[0].1.contains("negative"));
}

#[test]
fn the_gateway_seed_is_a_dispatch_serenity_reads() {
    let t = aetherv_fuzz::targets::all()
        .into_iter()
        .find(|t| t.name == "discord_gateway_dispatch")
        .expect("target");
    let ia = aetherv_discord::gateway::dispatched_interaction(&t.seeds[0]);
    assert!(ia.is_ok(), "{:?}", ia.err());
}
