//! Reads that are not about one resource or job: inventory, hosts, VMs, form schemas,
//! health, and the OpenAPI document.

use super::caller;
use crate::docs::{Health, HostList, Inventory, VmList};
use crate::problem::Problem;
use crate::Api;
use aetherv_bot::serve::Role;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Leading => "leading",
        Role::CatchingUp => "catching_up",
        Role::Standby => "standby",
        Role::Stopped => "stopped",
    }
}

/// Alive.
#[utoipa::path(
    get, path = "/healthz", tag = "health", summary = "Liveness",
    responses((status = 200, description = "The process answers", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        role: role_name(aetherv_bot::serve::role()).into(),
    })
}

/// Ready: this bot leads with its replay done (a standby is not ready).
#[utoipa::path(
    get, path = "/readyz", tag = "health", summary = "Readiness",
    responses(
        (status = 200, description = "This bot serves the API", body = Health),
        (status = 503, description = "A standby, or replaying", body = Health),
    )
)]
pub async fn readyz() -> Response {
    let role = aetherv_bot::serve::role();
    let ready = role == Role::Leading;
    let doc = Health {
        status: if ready { "ok" } else { "not ready" }.into(),
        role: role_name(role).into(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = (status, Json(doc)).into_response();
    if !ready {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "health", summary = "The OpenAPI document",
    responses((status = 200, description = "OpenAPI 3.1", body = Object))
)]
pub async fn openapi_json() -> Response {
    let mut resp = Json(crate::openapi::document()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Every host and VM.
#[utoipa::path(
    get, path = "/api/v1/inventory", tag = "inventory", summary = "Inventory",
    responses(
        (status = 200, description = "Hosts and VMs from the last inventory", body = Inventory),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn inventory(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<Inventory>, Problem> {
    caller(&api, &headers)?;
    let snap = api.store.snapshot();
    Ok(Json(Inventory {
        hosts: snap.hosts.clone(),
        vms: snap.vms.clone(),
    }))
}

/// Hosts with their state, memory, running job and queue.
#[utoipa::path(
    get, path = "/api/v1/hosts", tag = "inventory", summary = "Hosts",
    responses(
        (status = 200, description = "Hosts", body = HostList),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn hosts(State(api): State<Api>, headers: HeaderMap) -> Result<Json<HostList>, Problem> {
    caller(&api, &headers)?;
    Ok(Json(HostList {
        hosts: api.store.snapshot().hosts.clone(),
    }))
}

/// The VM listing's filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VmsQuery {
    /// VMs of this host only.
    pub host: Option<String>,
}

/// VMs.
#[utoipa::path(
    get, path = "/api/v1/vms", tag = "inventory", summary = "VMs",
    params(VmsQuery),
    responses(
        (status = 200, description = "VMs", body = VmList),
        (status = 400, description = "A query parameter is not understood", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn vms(
    State(api): State<Api>,
    query: Result<Query<VmsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<VmList>, Problem> {
    caller(&api, &headers)?;
    let Query(q) =
        query.map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "host is a host name"))?;
    let snap = api.store.snapshot();
    Ok(Json(VmList {
        vms: snap
            .vms
            .iter()
            .filter(|v| {
                q.host
                    .as_deref()
                    .is_none_or(|h| v.host.eq_ignore_ascii_case(h))
            })
            .cloned()
            .collect(),
    }))
}

/// A form schema as JSON Schema (`vm`, `disk`, `nic`, `guest`, `managed-deployment`).
#[utoipa::path(
    get, path = "/api/v1/schema/{id}", tag = "schemas", summary = "A form's JSON Schema",
    params(("id" = String, Path, description = "vm, disk, nic, guest or managed-deployment")),
    responses(
        (status = 200, description = "The JSON Schema of the form's `values`", body = Object, content_type = "application/schema+json"),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such form", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn schema(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    super::principal(&api, &headers)?;
    let forms = aetherv_core::schema::Forms::builtin()
        .map_err(|_| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "forms do not load"))?;
    let form = forms
        .get(&id)
        .ok_or_else(|| Problem::not_found("no form with this id"))?;
    let mut resp = Json(crate::forms::json_schema(form)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/schema+json"),
    );
    Ok(resp)
}
