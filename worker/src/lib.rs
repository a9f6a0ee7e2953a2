//! aetherv-worker (in progress)
