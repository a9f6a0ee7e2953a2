//! From an HTTP write to the engine's request: which job kind a route is (`core::ops`), its
//! target (the host of the VM an id names, from the last inventory, or the form's
//! `target_host` / `target_cluster`), and its spec (the form's values, plus the ids from the
//! path). Nothing is validated here: the engine's request path does it, as for AMQP.

use crate::problem::Problem;
use aetherv_bot::state::State;
use aetherv_core::contract::request::JobRequest;
use aetherv_core::rbac::Principal;
use aetherv_core::{JobId, JobKind, Target};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

/// Which write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/v1/resources/vms`.
    CreateVm,
    /// `POST /api/v1/resources/disks`.
    CreateDisk,
    /// `POST /api/v1/resources/nics`.
    CreateNic,
    /// `POST /api/v1/managed-deployments`.
    Managed,
    /// `PATCH /api/v1/resources/vms/{id}`.
    UpdateVm,
    /// `DELETE /api/v1/resources/vms/{id}`.
    DeleteVm,
    /// `PATCH /api/v1/resources/disks/{id}`.
    UpdateDisk,
    /// `DELETE /api/v1/resources/disks/{id}`.
    DeleteDisk,
    /// `PATCH /api/v1/resources/nics/{id}`.
    UpdateNic,
    /// `DELETE /api/v1/resources/nics/{id}`.
    DeleteNic,
    /// `POST /api/v1/resources/vms/{id}/power`.
    Power,
    /// `POST /api/v1/resources/vms/{id}/initialize`.
    Initialize,
}

impl Route {
    /// The job kind (`core::ops`).
    pub fn kind(self) -> JobKind {
        match self {
            Route::CreateVm => JobKind::VmCreate,
            Route::CreateDisk => JobKind::DiskCreate,
            Route::CreateNic => JobKind::NicCreate,
            Route::Managed => JobKind::DeploymentManaged,
            Route::UpdateVm => JobKind::VmUpdate,
            Route::DeleteVm => JobKind::VmDelete,
            Route::UpdateDisk => JobKind::DiskUpdate,
            Route::DeleteDisk => JobKind::DiskDelete,
            Route::UpdateNic => JobKind::NicUpdate,
            Route::DeleteNic => JobKind::NicDelete,
            Route::Power => JobKind::VmPower,
            Route::Initialize => JobKind::VmInitialize,
        }
    }
}

/// A write as the HTTP handler hands it over.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// Which route.
    pub route: Route,
    /// The body's `values`.
    pub values: Map<String, Value>,
    /// The `{id}` of the path.
    pub id: Option<String>,
    /// The job id derived from the `Idempotency-Key`.
    pub job_id: Option<JobId>,
}

/// What the engine is asked.
#[derive(Debug)]
pub struct Write {
    /// The request for [`aetherv_bot::Engine::submit_request`].
    pub request: JobRequest,
}

/// A call from an HTTP handler into the serve loop.
#[derive(Debug)]
pub enum Call {
    /// A write.
    Submit {
        /// The caller.
        who: Principal,
        /// What it asks.
        write: WriteRequest,
        /// The answer.
        reply: oneshot::Sender<Submitted>,
    },
    /// `DELETE /api/v1/jobs/{id}`.
    Cancel {
        /// The caller.
        who: Principal,
        /// The job.
        job: JobId,
        /// The answer.
        reply: oneshot::Sender<Cancelled>,
    },
}

/// What became of a write.
#[derive(Debug)]
pub enum Submitted {
    /// The job exists (new, or the one an earlier request with the same key made).
    Accepted {
        /// The job.
        job: JobId,
        /// Whether it waits for approval in chat.
        awaiting_approval: bool,
        /// The idempotency key's earlier job.
        replayed: bool,
        /// Its state now (`store::state_name`).
        state: &'static str,
    },
    /// Refused: the problem to answer with.
    Refused(Problem),
}

/// What became of a cancellation.
#[derive(Debug)]
pub enum Cancelled {
    /// Asked (or done, for a request awaiting approval).
    Accepted(String),
    /// No such job.
    NotFound,
    /// The caller may not.
    Forbidden(String),
    /// Nothing to cancel (finished, or not the caller's).
    Conflict(String),
}

fn text(values: &Map<String, Value>, key: &str) -> Option<String> {
    values
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// The VM `id` names: its name and host.
fn vm_by_id(state: &State, id: &str) -> Option<(String, String)> {
    state.host_infos().iter().find_map(|(host, h)| {
        h.vms
            .values()
            .find(|v| v.id.eq_ignore_ascii_case(id))
            .map(|v| (v.name.clone(), host.clone()))
    })
}

/// The VM (id, name, host) a disk or adapter id belongs to.
fn owner_of(state: &State, id: &str, disk: bool) -> Option<(String, String, String)> {
    state.host_infos().iter().find_map(|(host, h)| {
        h.details.iter().find_map(|(key, d)| {
            let has = if disk {
                d.disks.iter().any(|x| x.id.eq_ignore_ascii_case(id))
            } else {
                d.nics.iter().any(|x| x.id.eq_ignore_ascii_case(id))
            };
            if !has {
                return None;
            }
            let row = h.vms.get(key)?;
            Some((row.id.clone(), row.name.clone(), host.clone()))
        })
    })
}

/// The placement a create names (validation reports a missing one).
fn placement(values: &Map<String, Value>) -> Target {
    match (text(values, "target_host"), text(values, "target_cluster")) {
        (Some(h), _) => Target::Host(h),
        (None, Some(c)) => Target::Cluster(c),
        (None, None) => Target::Host(String::new()),
    }
}

/// The engine request of a write, or why there is none (404 for an unknown id in the path,
/// 422 for an unknown `vm_id` in the body).
pub fn translate(state: &State, w: WriteRequest) -> Result<Write, Problem> {
    let WriteRequest {
        route,
        mut values,
        id,
        job_id,
    } = w;
    let path_id = id.unwrap_or_default();
    let target = match route {
        Route::CreateVm | Route::Managed => placement(&values),
        Route::CreateDisk | Route::CreateNic => {
            let Some(vm_id) = text(&values, "vm_id") else {
                return Err(Problem::field(
                    "vm_id",
                    "required",
                    "vm_id is required: the id of the VM to attach to",
                ));
            };
            match vm_by_id(state, &vm_id) {
                // The form takes the id only (the agent finds the VM by it).
                Some((_, host)) => Target::Host(host),
                None => {
                    return Err(Problem::field(
                        "vm_id",
                        "not_found",
                        "no VM with this id in the inventory",
                    ))
                }
            }
        }
        Route::UpdateVm | Route::DeleteVm | Route::Power | Route::Initialize => {
            let Some((name, host)) = vm_by_id(state, &path_id) else {
                return Err(Problem::not_found("no VM with this id"));
            };
            values.insert("vm_id".into(), Value::String(path_id));
            values.insert("vm_name".into(), Value::String(name));
            Target::Host(host)
        }
        Route::UpdateDisk | Route::DeleteDisk | Route::UpdateNic | Route::DeleteNic => {
            let disk = matches!(route, Route::UpdateDisk | Route::DeleteDisk);
            let Some((vm_id, name, host)) = owner_of(state, &path_id, disk) else {
                return Err(Problem::not_found(if disk {
                    "no disk with this id"
                } else {
                    "no network adapter with this id"
                }));
            };
            values.insert("vm_id".into(), Value::String(vm_id));
            values.insert("vm_name".into(), Value::String(name));
            values.insert("resource_id".into(), Value::String(path_id));
            Target::Host(host)
        }
    };
    if route == Route::DeleteVm {
        // A VM's deletion removes its disks (cascade) and turns it off first unless asked
        // otherwise.
        values.entry("delete_disks").or_insert(Value::Bool(true));
        values.entry("force").or_insert(Value::Bool(true));
    }
    Ok(Write {
        request: JobRequest {
            v: 1,
            job_id,
            kind: route.kind(),
            target,
            spec: values,
            secrets: None,
        },
    })
}
