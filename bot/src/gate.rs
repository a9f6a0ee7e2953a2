//! The gate's safeguards against inventory: one pure function every front door (console,
//! Slack, Discord, later AMQP and HTTP) calls after schema validation and before policy, so a
//! request certain to fail never reaches an approver.
//!
//! [`check`] reads only what the bot knows from the event stream ([`State`]: hosts with their
//! last inventory, open jobs) and the form limits ([`Forms`]); it does no I/O. Each problem is a
//! [`FieldError`] naming the field of the request, all of them at once, at most one per field.
//!
//! The per-host rules (name unused, image / network / storage class present, the VM and its disk
//! exist, a disk never shrinks, memory fits) are [`aetherv_core::safeguards`], shared with the
//! worker's preflight. The gate adds what only the bot knows:
//! 1. the target host is known, and its last inventory poll answered;
//! 2. a new VM's name is not claimed by another open request (awaiting approval, queued,
//!    running or interrupted) for the same host.
//!
//! The shared rules include a VM's new memory and processors within the VM form's limits, and
//! the disk or network adapter a removal names being the VM's (when the inventory listed them).
//!
//! The world may change between this check and the job's first step; the worker's preflight
//! checks again against fresh inventory, with the same rules.

use crate::state::{HostInfo, Phase, State};
use aetherv_core::ops::JobSpec;
use aetherv_core::safeguards::{self, Checks, DiskFacts, Errors, HostFacts, VmFacts};
use aetherv_core::schema::Forms;
use aetherv_core::validate::{ErrorCode, FieldError};
use aetherv_core::{JobKind, Target};
use serde_json::{Map, Value};

/// The field that names the host of a request.
const HOST_FIELD: &str = "target_host";

fn error(field: &str, code: ErrorCode, message: String) -> FieldError {
    FieldError {
        field: field.to_string(),
        code,
        message,
    }
}

/// The refusal of a spec that does not read as `kind`'s typed spec. It names no value it
/// could not read (serde's own message quotes the value: a password typed into a number
/// field would be echoed); the form schema's errors, where the kind has a form, say which
/// field is wrong.
pub(crate) fn spec_mismatch(kind: JobKind) -> FieldError {
    error(
        "",
        ErrorCode::InvalidType,
        format!("the request does not match the fields of {}", kind.as_str()),
    )
}

/// Checks a schema-valid request of `kind` for `target` against what the bot knows. `Ok` when
/// nothing known dooms it; otherwise every problem, each naming its field.
pub fn check(
    state: &State,
    forms: &Forms,
    kind: JobKind,
    target: &Target,
    spec: &Map<String, Value>,
) -> Result<(), Vec<FieldError>> {
    let parsed = match JobSpec::parse(kind, spec) {
        Ok(p) => p,
        Err(_) => return Err(vec![spec_mismatch(kind)]),
    };
    let Target::Host(host_name) = target else {
        // A cluster request is placed on a member by the worker: the bot does not know which,
        // so nothing host-specific is checked here (the worker's preflight does it).
        return Ok(());
    };
    let mut errors = Errors::default();
    let Some(host) = state.hosts.get(&host_name.to_ascii_lowercase()) else {
        errors.add(
            HOST_FIELD,
            ErrorCode::UnknownChoice,
            format!("{host_name} is not a known host (see `hosts`)"),
        );
        return Err(errors.0);
    };
    match host.reachable {
        Some(false) => {
            let reason = host
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            errors.add(
                HOST_FIELD,
                ErrorCode::HostUnreachable,
                format!("host {host_name} did not answer its last inventory poll{reason}"),
            );
            return Err(errors.0);
        }
        // Never polled yet (a configured host before its first inventory): nothing is known
        // against it but the open requests, whose names are still claimed; the worker's
        // preflight checks the fresh inventory.
        None => {
            if let Some(name) = safeguards::new_vm_name(&parsed) {
                claimed(state, &mut errors, host_name, name);
            }
            return if errors.0.is_empty() {
                Ok(())
            } else {
                Err(errors.0)
            };
        }
        Some(true) => {}
    }
    let facts = host_facts(host_name, host);
    let checks = Checks {
        forms: Some(forms),
        own_tag: None,
    };
    safeguards::check(&facts, &parsed, checks, &mut errors);
    if let Some(name) = safeguards::new_vm_name(&parsed) {
        if !errors.has("vm_name") {
            claimed(state, &mut errors, host_name, name);
        }
    }
    if errors.0.is_empty() {
        Ok(())
    } else {
        Err(errors.0)
    }
}

/// The safeguards' facts of a host from what the bot knows of it.
fn host_facts(host_name: &str, host: &HostInfo) -> HostFacts {
    HostFacts {
        host: host_name.to_string(),
        vms: host
            .vms
            .iter()
            .map(|(key, row)| VmFacts {
                name: row.name.clone(),
                id: row.id.clone(),
                state: row.state.clone(),
                memory_gb: row.memory_gb,
                notes: String::new(),
                disks: host.details.get(key).map(|d| {
                    d.disks
                        .iter()
                        .map(|d| DiskFacts {
                            id: d.id.clone(),
                            path: d.path.clone(),
                            size_gb: d.size_gb,
                        })
                        .collect()
                }),
                nics: host.details.get(key).map(|d| {
                    d.nics
                        .iter()
                        .map(|n| (n.id.clone(), n.name.clone()))
                        .collect()
                }),
            })
            .collect(),
        images: host.images.clone(),
        networks: host.networks.clone(),
        storage_classes: host.storage_classes.clone(),
        total_memory_gb: host.total_memory_gb,
        memory_in_use_gb: host.memory_in_use_gb,
    }
}

/// A new VM's name claimed by another open request for the same host.
fn claimed(state: &State, errors: &mut Errors, host: &str, name: &str) {
    // Jobs rebuilt from events after a restart carry their envelope only when they asked
    // for approval (`approval.requested` holds it); a queued job without one is not seen.
    let claim = state.jobs.values().find(|j| {
        matches!(
            j.phase,
            Phase::AwaitingApproval | Phase::Queued | Phase::Running | Phase::Interrupted
        ) && matches!(j.kind.as_str(), "vm.create" | "deployment.managed")
            && j.target.eq_ignore_ascii_case(host)
            && j.envelope
                .as_ref()
                .and_then(|e| e.spec.get("vm_name"))
                .and_then(Value::as_str)
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
    });
    if let Some(j) = claim {
        errors.add(
            "vm_name",
            ErrorCode::NameInUse,
            format!(
                "{name} is claimed on {host} by job {} ({})",
                j.short(),
                j.phase.as_str()
            ),
        );
    }
}
