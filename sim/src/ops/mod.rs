//! The agent operations, executed against a [`HostState`] with Hyper-V's semantics.
//!
//! [`execute`] is synchronous and free of I/O: it takes the request, changes the host state and
//! returns the log lines the agent would print plus its single result. Latency, recording, the
//! idempotency journal and WinRM live elsewhere ([`crate::sim`], [`crate::server`]).
//!
//! Error codes are the agent contract's stable codes: `invalid_argument`, `not_found`,
//! `name_conflict`, `invalid_state`, `disks_attached`, `shared_disk`, `insufficient_memory`,
//! `no_free_slot`, plus whatever an injected fault says. The fields each operation reads come
//! from the core vocabulary ([`AgentOperation::fields`]); others are ignored with a warning.

use crate::config::StorageClass;
use crate::guest::{Guest, GuestEvent};
use crate::state::{disk_view, nic_view, Disk, HostState, Nic, Vm, VmState};
use aetherv_core::ops::unknown_fields;
use aetherv_core::{AgentOperation, AgentRequest, AgentResult};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

mod disk;
mod kvp;
mod nic;
mod vm;

use disk::*;
use kvp::*;
use nic::*;
use vm::*;

/// What one execution printed and returned.
#[derive(Debug, Clone, PartialEq)]
pub struct OpOutput {
    /// Log lines printed before the result line.
    pub logs: Vec<String>,
    /// The result.
    pub result: AgentResult,
}

impl OpOutput {
    /// The process exit code the agent ends with: 0 on success, 1 on error.
    pub fn exit_code(&self) -> i32 {
        if self.result.is_ok() {
            0
        } else {
            1
        }
    }
}

/// A failed operation: a stable code and a Hyper-V-like message.
#[derive(Debug, Clone, PartialEq)]
struct OpError {
    code: &'static str,
    message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> OpError {
    OpError {
        code,
        message: message.into(),
    }
}

type OpResult = Result<(String, Value), OpError>;

/// Execution context: the request spec, the log sink, the guest and the clock.
struct Ctx<'a> {
    spec: &'a Map<String, Value>,
    /// The request's idempotency key, or its correlation id without one.
    key: &'a str,
    logs: Vec<String>,
    guest: Option<&'a dyn Guest>,
    now: DateTime<Utc>,
}

impl Ctx<'_> {
    fn log(&mut self, line: impl Into<String>) {
        self.logs.push(line.into());
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.spec
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    fn req_str(&self, key: &str) -> Result<&str, OpError> {
        self.str(key).ok_or_else(|| {
            err(
                "invalid_argument",
                format!("missing required field '{key}'"),
            )
        })
    }

    /// A non-negative integer given as a number or a numeric string.
    fn uint(&self, key: &str) -> Result<Option<u64>, OpError> {
        match self.spec.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                err(
                    "invalid_argument",
                    format!("field '{key}' must be a non-negative integer"),
                )
            }),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
                err(
                    "invalid_argument",
                    format!("field '{key}' must be a non-negative integer"),
                )
            }),
            Some(_) => Err(err(
                "invalid_argument",
                format!("field '{key}' must be a non-negative integer"),
            )),
        }
    }

    /// The first of several alias keys that is present.
    fn uint_any(&self, keys: &[&str]) -> Result<Option<u64>, OpError> {
        for k in keys {
            if let Some(v) = self.uint(k)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, OpError> {
        match self.spec.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" | "1" => Ok(Some(true)),
                "false" | "off" | "no" | "0" => Ok(Some(false)),
                _ => Err(err(
                    "invalid_argument",
                    format!("field '{key}' must be a boolean"),
                )),
            },
            Some(_) => Err(err(
                "invalid_argument",
                format!("field '{key}' must be a boolean"),
            )),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, OpError> {
        match self.spec.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        err(
                            "invalid_argument",
                            format!("field '{key}' must be a list of strings"),
                        )
                    })
                })
                .collect(),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(_) => Err(err(
                "invalid_argument",
                format!("field '{key}' must be a list of strings"),
            )),
        }
    }
}

/// Executes one agent request against `host`.
pub fn execute(
    host: &mut HostState,
    req: &AgentRequest,
    guest: Option<&dyn Guest>,
    now: DateTime<Utc>,
) -> OpOutput {
    let op = req.operation;
    let mut ctx = Ctx {
        spec: &req.spec,
        key: req
            .idempotency_key
            .as_deref()
            .unwrap_or(&req.correlation_id),
        logs: Vec::new(),
        guest,
        now,
    };
    ctx.log(format!(
        "Aether-V agent {} on {}: {} (correlation {})",
        host.spec.agent_version,
        host.spec.name.to_ascii_uppercase(),
        op,
        req.correlation_id
    ));
    for k in unknown_fields(op.fields(), &req.spec) {
        ctx.log(format!("WARNING: ignoring unknown field '{k}'"));
    }
    let outcome: Result<(String, Value), (String, String)> = match host.take_fault(op.as_str()) {
        Some(f) => {
            ctx.log(format!("Injected fault for {op}"));
            Err((f.code, f.message))
        }
        None => dispatch(host, op, &mut ctx).map_err(|e| (e.code.to_string(), e.message)),
    };
    let result = match outcome {
        Ok((message, data)) => AgentResult::success(message, data, &req.correlation_id),
        Err((code, message)) => {
            // A read-only lookup that finds nothing answered the question: not an error to
            // log (the managed deployment's name probe asks exactly that).
            if code == "not_found" && !op.is_mutating() {
                ctx.log(format!("Not found: {message}"));
            } else {
                ctx.log(format!("ERROR: {message}"));
            }
            AgentResult::error(&code, message, &req.correlation_id)
        }
    };
    OpOutput {
        logs: ctx.logs,
        result,
    }
}

fn dispatch(host: &mut HostState, op: AgentOperation, ctx: &mut Ctx<'_>) -> OpResult {
    match op {
        AgentOperation::HostInventory => host_inventory(host, ctx),
        AgentOperation::Noop => noop(ctx),
        AgentOperation::VmCreate => vm_create(host, ctx),
        AgentOperation::VmGet => vm_get(host, ctx),
        AgentOperation::VmUpdate => vm_update(host, ctx),
        AgentOperation::VmDelete => vm_delete(host, ctx),
        AgentOperation::VmPower => vm_power(host, ctx),
        AgentOperation::DiskCreate => disk_create(host, ctx),
        AgentOperation::DiskUpdate => disk_update(host, ctx),
        AgentOperation::DiskDelete => disk_delete(host, ctx),
        AgentOperation::NicCreate => nic_create(host, ctx),
        AgentOperation::NicUpdate => nic_update(host, ctx),
        AgentOperation::NicDelete => nic_delete(host, ctx),
        AgentOperation::KvpRead => kvp_read(host, ctx),
        AgentOperation::KvpWrite => kvp_write(host, ctx),
        AgentOperation::KvpRemove => kvp_remove(host, ctx),
        AgentOperation::IsoAttach => iso_attach(host, ctx),
        AgentOperation::IsoDetach => iso_detach(host, ctx),
        AgentOperation::ClusterAdd => cluster_add(host, ctx),
        AgentOperation::ClusterRemove => cluster_remove(host, ctx),
    }
}

/// The host's storage class `name` (case-insensitive).
fn storage_class<'h>(host: &'h HostState, name: &str) -> Result<&'h StorageClass, OpError> {
    host.spec
        .storage_classes
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            err(
                "not_found",
                format!(
                    "storage class '{name}' is not defined on {}",
                    host.spec.name
                ),
            )
        })
}

/// Index of the VM named by `vm_id` and/or `vm_name`; both given must agree.
fn find_vm(host: &HostState, ctx: &Ctx<'_>) -> Result<usize, OpError> {
    let id = ctx.str("vm_id");
    let name = ctx.str("vm_name");
    let by_id = id.map(|id| host.vms.iter().position(|v| v.id.eq_ignore_ascii_case(id)));
    let by_name = name.map(|n| host.vms.iter().position(|v| v.name.eq_ignore_ascii_case(n)));
    match (by_id, by_name) {
        (None, None) => Err(err(
            "invalid_argument",
            "missing required field 'vm_id' or 'vm_name'",
        )),
        (Some(None), _) => Err(err(
            "not_found",
            format!(
                "Hyper-V was unable to find a virtual machine with id '{}'.",
                id.unwrap_or_default()
            ),
        )),
        (None, Some(None)) => Err(err(
            "not_found",
            format!(
                "Hyper-V was unable to find a virtual machine with name '{}'.",
                name.unwrap_or_default()
            ),
        )),
        (Some(Some(i)), Some(_)) => {
            let vm = &host.vms[i];
            if name.is_some_and(|n| !vm.name.eq_ignore_ascii_case(n)) {
                Err(err(
                    "invalid_argument",
                    format!(
                        "vm_id '{}' belongs to VM '{}', not '{}'",
                        vm.id,
                        vm.name,
                        name.unwrap_or_default()
                    ),
                ))
            } else {
                Ok(i)
            }
        }
        (Some(Some(i)), None) | (None, Some(Some(i))) => Ok(i),
    }
}

fn host_inventory(host: &mut HostState, ctx: &mut Ctx<'_>) -> OpResult {
    ctx.log("Collecting host resources and virtual machines");
    let vms: Vec<Value> = host.vms.iter().map(Vm::view).collect();
    ctx.log(format!("Found {} virtual machine(s)", vms.len()));
    Ok((
        "Inventory collected".into(),
        json!({"host": host.host_view(), "vms": vms}),
    ))
}

fn noop(ctx: &mut Ctx<'_>) -> OpResult {
    ctx.log("No-op: validating the request envelope");
    Ok((
        "noop completed".into(),
        json!({"operation_validated": true, "echo": Value::Object(ctx.spec.clone())}),
    ))
}
