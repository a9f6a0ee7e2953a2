//! The router and what every route shares: who is calling (401), whether this bot serves
//! (503 with `Retry-After` on a standby or while the event stream is replayed), bodies
//! (`{"values": {...}}`, problems for anything else), `Idempotency-Key`, and the way into the
//! serve loop.

mod jobs;
mod reads;
mod resources;

use crate::problem::Problem;
use crate::requests::{Call, Submitted, WriteRequest};
use crate::Api;
use aetherv_bot::serve::Role;
use aetherv_core::rbac::Principal;
use aetherv_core::JobId;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use jobs::*;
pub use reads::*;
pub use resources::*;

/// Seconds a client is told to wait while this bot does not serve.
pub const RETRY_AFTER_SECS: u32 = 5;

/// How long a write waits for the serve loop.
pub const CALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Longest request body accepted.
pub const BODY_LIMIT: usize = 256 * 1024;

/// The namespace of job ids derived from idempotency keys.
const IDEMPOTENCY_NS: uuid::Uuid = uuid::Uuid::from_u128(0x6a1f_4c2e_9d0b_4e57_8f3a_2b7c_5d91_e4a0);

/// A write's body as read (too long: refused).
pub type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

/// Every route.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(reads::healthz))
        .route("/readyz", get(reads::readyz))
        .route("/api/openapi.json", get(reads::openapi_json))
        .route("/api/v1/inventory", get(reads::inventory))
        .route("/api/v1/hosts", get(reads::hosts))
        .route("/api/v1/vms", get(reads::vms))
        .route("/api/v1/schema/{id}", get(reads::schema))
        .route("/api/v1/jobs", get(jobs::list_jobs))
        .route(
            "/api/v1/jobs/{id}",
            get(jobs::get_job).delete(jobs::cancel_job),
        )
        .route("/api/v1/jobs/{id}/events", get(jobs::job_events))
        .route(
            "/api/v1/managed-deployments",
            post(resources::create_managed),
        )
        .route("/api/v1/resources/vms", post(resources::create_vm))
        .route("/api/v1/resources/disks", post(resources::create_disk))
        .route("/api/v1/resources/nics", post(resources::create_nic))
        .route(
            "/api/v1/resources/vms/{id}",
            get(resources::get_vm)
                .patch(resources::update_vm)
                .delete(resources::delete_vm),
        )
        .route(
            "/api/v1/resources/disks/{id}",
            get(resources::get_disk)
                .patch(resources::update_disk)
                .delete(resources::delete_disk),
        )
        .route(
            "/api/v1/resources/nics/{id}",
            get(resources::get_nic)
                .patch(resources::update_nic)
                .delete(resources::delete_nic),
        )
        .route(
            "/api/v1/resources/vms/{id}/power",
            post(resources::power_vm),
        )
        .route(
            "/api/v1/resources/vms/{id}/initialize",
            post(resources::initialize_vm),
        )
        // apiweb: the status page (`/`, `/login`, `/logout`, `/status/*`).
        .merge(crate::status::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api)
}

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take this method",
    )
}

/// The caller, or 401.
pub fn principal(api: &Api, headers: &HeaderMap) -> Result<Principal, Problem> {
    let header = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Problem::unauthorized("the Authorization header is not text"))?,
        ),
    };
    api.authenticator()
        .authenticate(header, chrono::Utc::now())
        .map_err(|e| Problem::unauthorized(e.to_string()))
}

/// 503 unless this bot leads with its replay done.
pub fn serving() -> Result<(), Problem> {
    match aetherv_bot::serve::role() {
        Role::Leading => Ok(()),
        Role::CatchingUp => Err(Problem::unavailable(
            "the bot is replaying the event stream; try again shortly",
            RETRY_AFTER_SECS,
        )),
        Role::Standby => Err(Problem::unavailable(
            "this bot is a standby; another bot serves the API",
            RETRY_AFTER_SECS,
        )),
        Role::Stopped => Err(Problem::unavailable(
            "the bot is not serving",
            RETRY_AFTER_SECS,
        )),
    }
}

/// The caller of a route, once this bot serves.
pub fn caller(api: &Api, headers: &HeaderMap) -> Result<Principal, Problem> {
    let who = principal(api, headers)?;
    serving()?;
    Ok(who)
}

/// A write's body: `{"values": {...}}` (an empty body: no values).
pub fn values_of(body: &[u8]) -> Result<Map<String, Value>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "the body is not a JSON document"))?;
    let Value::Object(mut top) = v else {
        return Err(Problem::field(
            "",
            "invalid_type",
            "the body must be an object {\"values\": {...}}",
        ));
    };
    if let Some(k) = top.keys().find(|k| k.as_str() != "values") {
        let k = k.clone();
        return Err(Problem::field(
            &k,
            "unknown_field",
            "the body takes only `values`",
        ));
    }
    match top.remove("values") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(Problem::field(
            "values",
            "invalid_type",
            "values must be an object of field ids and values",
        )),
    }
}

/// The job id an `Idempotency-Key` names for a principal, and the request's fingerprint.
fn idempotency(
    who: &Principal,
    headers: &HeaderMap,
    route: &str,
    id: Option<&str>,
    values: &Map<String, Value>,
) -> Result<Option<(JobId, [u8; 32])>, Problem> {
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = key
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 255 characters of text",
            )
        })?;
    let name = format!("{}\n{key}", aetherv_bot::state::display(&who.id));
    let job = JobId(uuid::Uuid::new_v5(&IDEMPOTENCY_NS, name.as_bytes()));
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(id.unwrap_or_default().as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(values).unwrap_or_default());
    Ok(Some((job, h.finalize().into())))
}

/// Sends a write into the serve loop: `202 Accepted` with the job, or the problem.
pub async fn submit(
    api: &Api,
    headers: &HeaderMap,
    route: crate::requests::Route,
    id: Option<String>,
    body: Body,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is longer than {BODY_LIMIT} bytes or could not be read"),
            )
            .into_response()
        }
    };
    match submit_inner(api, headers, route, id, &body).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn submit_inner(
    api: &Api,
    headers: &HeaderMap,
    route: crate::requests::Route,
    id: Option<String>,
    body: &[u8],
) -> Result<Response, Problem> {
    let who = caller(api, headers)?;
    let values = values_of(body)?;
    let kind = route.kind().as_str();
    let idem = idempotency(&who, headers, kind, id.as_deref(), &values)?;
    if let Some((job, fingerprint)) = &idem {
        let reused = match api.store.fingerprint(job) {
            Some((_, f)) => f != *fingerprint,
            None => api
                .store
                .snapshot()
                .jobs
                .get(job)
                .is_some_and(|j| j.row.kind != kind),
        };
        if reused {
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was used for a different request",
            );
            p.kind = "urn:aetherv:problem:idempotency-key-reused";
            p.job_id = Some(*job);
            return Err(p);
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let call = Call::Submit {
        who,
        write: WriteRequest {
            route,
            values,
            id,
            job_id: idem.as_ref().map(|(j, _)| *j),
        },
        reply: tx,
    };
    let answer = send(api, call, rx).await?;
    match answer {
        Submitted::Refused(p) => Err(p),
        Submitted::Accepted {
            job,
            awaiting_approval,
            replayed,
            state,
        } => {
            if let Some((j, f)) = idem {
                api.store.remember(j, kind, f);
            }
            Ok(accepted(job, awaiting_approval, replayed, state))
        }
    }
}

/// Hands a call to the serve loop and waits for its answer.
pub async fn send<T>(
    api: &Api,
    call: Call,
    rx: tokio::sync::oneshot::Receiver<T>,
) -> Result<T, Problem> {
    let busy = || Problem::unavailable("the bot is busy; try again", RETRY_AFTER_SECS);
    api.calls.try_send(call).map_err(|_| busy())?;
    match tokio::time::timeout(CALL_DEADLINE, rx).await {
        Ok(Ok(t)) => Ok(t),
        // The serve loop dropped the call (lost leadership, stopping) or did not answer.
        _ => Err(busy()),
    }
}

/// `202 Accepted` with the job and its `Location`.
fn accepted(job: JobId, awaiting_approval: bool, replayed: bool, state: &str) -> Response {
    let location = format!("/api/v1/jobs/{job}");
    let doc = crate::docs::Accepted {
        job_id: job.to_string(),
        location: location.clone(),
        state: state.into(),
        awaiting_approval,
        replayed,
    };
    let mut resp = (StatusCode::ACCEPTED, axum::Json(doc)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
