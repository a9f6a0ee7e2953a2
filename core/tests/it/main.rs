//! Integration tests of aetherv-core's forms: one binary, one module per concern.
#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod files;
mod names;
mod props;
mod schemas;
mod validation;

use aetherv_core::schema::{FormSchema, Forms};
use std::sync::OnceLock;

/// The built-in forms, loaded once.
pub fn forms() -> &'static Forms {
    static FORMS: OnceLock<Forms> = OnceLock::new();
    FORMS.get_or_init(|| Forms::builtin().expect("built-in schemas load"))
}

/// One built-in form.
pub fn form(id: &str) -> &'static FormSchema {
    forms().get(id).expect("form exists")
}
