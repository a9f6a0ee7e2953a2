//! aetherv-broker (in progress)
