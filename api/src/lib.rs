//! aetherv-api: the HTTP API (the `api` branch) and its status page and OIDC verifier (this
//! branch). Placeholder root until the `api` branch's crate is merged.

pub mod oidc;
pub mod status;
