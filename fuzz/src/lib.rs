//! A small mutation fuzzer that runs on stable Rust, and the targets: every parser of input
//! that comes from outside (job envelopes and events from the broker, form values and chat
//! lines from users, WS-Management responses, CLIXML streams and NTLM messages from hosts,
//! KVP items from guests, Slack and Discord payloads and signatures, YAML configurations and
//! form schemas).
//!
//! Each target starts from a seed corpus of valid inputs and mutates them (bit flips, byte
//! edits, insertions and deletions, splices of two inputs, repeated chunks, interesting
//! numbers, and for JSON inputs a value of the tree replaced). An input that panics is a
//! crash; one that takes longer than [`SLOW`] is a hang. Both are reported with the input,
//! and kept under `fuzz/regressions/<target>/` to be replayed by the tests.

pub mod targets;

// `aetherv config check` (it lives in the `aetherv` binary crate): the same source files,
// compiled here as siblings (`check` uses `super::schema` and `super::tree`), so the fuzzer
// runs the real checker.
#[path = "../../src/cmd/config/check.rs"]
pub mod check;
#[path = "../../src/cmd/config/schema.rs"]
pub mod schema;
#[path = "../../src/cmd/config/tree.rs"]
pub mod tree;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// The longest input tried (bounds memory per input).
pub const MAX_INPUT: usize = 64 * 1024;
/// An input taking longer than this is reported as a hang.
pub const SLOW: Duration = Duration::from_secs(1);

/// One fuzz target.
pub struct Target {
    /// Its name (the regression folder's name).
    pub name: &'static str,
    /// Valid inputs to start from.
    pub seeds: Vec<Vec<u8>>,
    /// Runs the parser on one input; must not panic.
    pub run: fn(&[u8]),
}

/// What one run of a target found.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs tried.
    pub tried: u64,
    /// Inputs that panicked, with the panic message.
    pub crashes: Vec<(Vec<u8>, String)>,
    /// Inputs slower than [`SLOW`].
    pub hangs: Vec<Vec<u8>>,
}

/// xorshift64*: a fast, seeded generator (reproducible runs).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

const INTERESTING: &[&[u8]] = &[
    b"0",
    b"-1",
    b"4294967296",
    b"18446744073709551616",
    b"1e309",
    b"null",
    b"true",
    b"\"\"",
    b"[]",
    b"{}",
    b"\\u0000",
    b"\xff\xfe",
    b"\xc3\x28",
    b"..",
    b"\\..\\",
    b"%00",
    b"\r\n",
    b"<",
    b"&amp;",
    b"_x0000_",
    b"_xD800_",
    b"<![CDATA[",
    b"]]>",
    b"---\n",
    b"*a",
    b"&a",
    b"!!binary",
    b"~",
];

fn json_mutate(rng: &mut Rng, v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) if !m.is_empty() && rng.below(4) != 0 => {
            let k = m
                .keys()
                .nth(rng.below(m.len()))
                .cloned()
                .unwrap_or_default();
            if let Some(inner) = m.get_mut(&k) {
                json_mutate(rng, inner);
            }
        }
        Value::Array(a) if !a.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(a.len());
            json_mutate(rng, &mut a[i]);
        }
        _ => {
            *v = match rng.below(9) {
                0 => Value::Null,
                1 => Value::Bool(rng.below(2) == 0),
                2 => serde_json::json!(rng.next_u64() as i64),
                3 => serde_json::json!(-(rng.below(1 << 20) as i64)),
                4 => serde_json::json!(f64::from(rng.below(1000) as u32) / 7.0),
                5 => Value::String("x".repeat(rng.below(5000))),
                6 => Value::String(
                    String::from_utf8_lossy(INTERESTING[rng.below(INTERESTING.len())]).into(),
                ),
                7 => serde_json::json!([v.clone(), v.clone()]),
                _ => serde_json::json!({ "a": v.clone() }),
            }
        }
    }
}

/// One mutation of `input` (with `other` for splices).
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    if rng.below(4) == 0 {
        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(input) {
            json_mutate(rng, &mut v);
            return serde_json::to_vec(&v).unwrap_or_default();
        }
    }
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next_u64() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let b = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(i..i, b.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i).min(64) + 1;
                out.drain(i..(i + n).min(len));
            }
            4 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = (rng.below(len - i) + 1).min(256);
                let chunk = out[i..i + n].to_vec();
                for _ in 0..rng.below(32) {
                    out.extend_from_slice(&chunk);
                }
            }
            6 if len > 0 => out.truncate(rng.below(len)),
            _ => {
                let i = rng.below(len + 1);
                out.insert(i, rng.next_u64() as u8);
            }
        }
    }
    out.truncate(MAX_INPUT);
    out
}

/// Runs `input` through `target`: `Err` with the panic message when it panics.
pub fn run_one(target: &Target, input: &[u8]) -> Result<Duration, String> {
    let start = Instant::now();
    catch_unwind(AssertUnwindSafe(|| (target.run)(input)))
        .map(|()| start.elapsed())
        .map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "panic".into())
        })
}

/// Fuzzes `target` for `budget` (or `max_inputs`, whichever comes first), from `seed`.
pub fn fuzz(target: &Target, budget: Duration, max_inputs: u64, seed: u64) -> Report {
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    let mut corpus: Vec<Vec<u8>> = target.seeds.clone();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    // Panics are reported here, not printed by the default hook.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let until = Instant::now() + budget;
    for seed_input in target.seeds.clone() {
        check(target, &seed_input, &mut report);
    }
    while Instant::now() < until && report.tried < max_inputs {
        let a = &corpus[rng.below(corpus.len())];
        let b = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, a, b);
        check(target, &input, &mut report);
        // Keep some mutants as new starting points (bounded).
        if rng.below(64) == 0 && corpus.len() < 256 {
            corpus.push(input);
        }
    }
    std::panic::set_hook(hook);
    report
}

fn check(target: &Target, input: &[u8], report: &mut Report) {
    report.tried += 1;
    match run_one(target, input) {
        Ok(took) if took > SLOW => report.hangs.push(input.to_vec()),
        Ok(_) => {}
        Err(msg) => {
            if report.crashes.len() < 16 {
                report.crashes.push((input.to_vec(), msg));
            }
        }
    }
}
