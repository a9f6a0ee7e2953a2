//! Resources (VMs, disks, network adapters) and the managed deployment: writes answer
//! `202 Accepted` with the job at once; reads by Hyper-V id come from the last inventory.

use super::Body;
use super::{caller, submit};
use crate::docs::{Accepted, DiskDoc, NicDoc, Values, VmDoc};
use crate::problem::Problem;
use crate::requests::Route;
use crate::Api;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;

macro_rules! write_route {
    ($(#[$doc:meta])* $name:ident, $route:expr, $path:literal, $summary:literal) => {
        $(#[$doc])*
        #[utoipa::path(
            post, path = $path, tag = "resources", summary = $summary,
            request_body(content = Values, description = "The form's field ids and values"),
            params(("Idempotency-Key" = Option<String>, Header, description = "A retried request with the same key returns the first job")),
            responses(
                (status = 202, description = "The job that does it", body = Accepted,
                 headers(("Location" = String, description = "/api/v1/jobs/{job_id}"))),
                (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
                (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
                (status = 403, description = "The caller's roles do not allow it", body = Problem, content_type = "application/problem+json"),
                (status = 413, description = "The body is too long", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "A name in use", body = Problem, content_type = "application/problem+json"),
                (status = 422, description = "Field errors", body = Problem, content_type = "application/problem+json"),
                (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = []))
        )]
        pub async fn $name(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
            submit(&api, &headers, $route, None, body).await
        }
    };
}

macro_rules! id_write_route {
    ($(#[$doc:meta])* $name:ident, $method:ident, $route:expr, $path:literal, $summary:literal) => {
        $(#[$doc])*
        #[utoipa::path(
            $method, path = $path, tag = "resources", summary = $summary,
            request_body(content = Option<Values>, description = "The fields to change (may be empty)"),
            params(
                ("id" = String, Path, description = "Hyper-V's id"),
                ("Idempotency-Key" = Option<String>, Header, description = "A retried request with the same key returns the first job"),
            ),
            responses(
                (status = 202, description = "The job that does it", body = Accepted,
                 headers(("Location" = String, description = "/api/v1/jobs/{job_id}"))),
                (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
                (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
                (status = 403, description = "The caller's roles do not allow it", body = Problem, content_type = "application/problem+json"),
                (status = 413, description = "The body is too long", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "No such resource", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "A conflict", body = Problem, content_type = "application/problem+json"),
                (status = 422, description = "Field errors", body = Problem, content_type = "application/problem+json"),
                (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = []))
        )]
        pub async fn $name(
            State(api): State<Api>,
            Path(id): Path<String>,
            headers: HeaderMap,
            body: Body,
        ) -> Response {
            submit(&api, &headers, $route, Some(id), body).await
        }
    };
}

write_route!(
    /// Creates a VM (the VM form, `schemas/vm.yaml`).
    create_vm, Route::CreateVm, "/api/v1/resources/vms", "Create a VM");
write_route!(
    /// Creates a disk on an existing VM (`vm_id`; the disk form, `schemas/disk.yaml`).
    create_disk, Route::CreateDisk, "/api/v1/resources/disks", "Create a disk on a VM");
write_route!(
    /// Creates a network adapter on an existing VM (`vm_id`; `schemas/nic.yaml`).
    create_nic, Route::CreateNic, "/api/v1/resources/nics", "Create a network adapter on a VM");
write_route!(
    /// A whole VM: VM, disk, adapter, guest initialization (`schemas/managed-deployment.yaml`).
    create_managed, Route::Managed, "/api/v1/managed-deployments", "Managed deployment");
id_write_route!(
    /// Changes a VM's memory, processors or settings (`gb_ram`, `cpu_cores`, …).
    update_vm, patch, Route::UpdateVm, "/api/v1/resources/vms/{id}", "Update a VM");
id_write_route!(
    /// Deletes a VM and its disks (`delete_disks` and `force` default to true).
    delete_vm, delete, Route::DeleteVm, "/api/v1/resources/vms/{id}", "Delete a VM");
id_write_route!(
    /// Expands a disk (`disk_size_gb`; never shrinks).
    update_disk, patch, Route::UpdateDisk, "/api/v1/resources/disks/{id}", "Expand a disk");
id_write_route!(
    /// Removes a disk from its VM.
    delete_disk, delete, Route::DeleteDisk, "/api/v1/resources/disks/{id}", "Delete a disk");
id_write_route!(
    /// Changes a network adapter (`network`, guards, MAC).
    update_nic, patch, Route::UpdateNic, "/api/v1/resources/nics/{id}", "Update a network adapter");
id_write_route!(
    /// Removes a network adapter.
    delete_nic, delete, Route::DeleteNic, "/api/v1/resources/nics/{id}", "Delete a network adapter");
id_write_route!(
    /// Power: `{"values": {"action": "start"|"shutdown"|"stop"|"reset"}}`.
    power_vm, post, Route::Power, "/api/v1/resources/vms/{id}/power", "Power a VM");
id_write_route!(
    /// Guest initialization of an existing VM (the guest form, `schemas/guest.yaml`).
    initialize_vm, post, Route::Initialize, "/api/v1/resources/vms/{id}/initialize", "Initialize a VM's guest");

/// A VM by id.
#[utoipa::path(
    get, path = "/api/v1/resources/vms/{id}", tag = "resources", summary = "Read a VM",
    params(("id" = String, Path, description = "Hyper-V's VM id")),
    responses(
        (status = 200, description = "The VM, its disks and adapters", body = VmDoc),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such VM", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_vm(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<VmDoc>, Problem> {
    caller(&api, &headers)?;
    let snap = api.store.snapshot();
    snap.vm(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| Problem::not_found("no VM with this id"))
}

/// A disk by id.
#[utoipa::path(
    get, path = "/api/v1/resources/disks/{id}", tag = "resources", summary = "Read a disk",
    params(("id" = String, Path, description = "Hyper-V's disk id")),
    responses(
        (status = 200, description = "The disk", body = DiskDoc),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such disk", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_disk(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<DiskDoc>, Problem> {
    caller(&api, &headers)?;
    let snap = api.store.snapshot();
    snap.disk(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| Problem::not_found("no disk with this id"))
}

/// A network adapter by id.
#[utoipa::path(
    get, path = "/api/v1/resources/nics/{id}", tag = "resources", summary = "Read a network adapter",
    params(("id" = String, Path, description = "Hyper-V's adapter id")),
    responses(
        (status = 200, description = "The adapter", body = NicDoc),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such adapter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_nic(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<NicDoc>, Problem> {
    caller(&api, &headers)?;
    let snap = api.store.snapshot();
    snap.nic(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| Problem::not_found("no network adapter with this id"))
}
