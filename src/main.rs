//! The `aetherv` binary: a short composition root.
fn main() {}
