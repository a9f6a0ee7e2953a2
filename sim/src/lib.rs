//! aetherv-sim (in progress)
