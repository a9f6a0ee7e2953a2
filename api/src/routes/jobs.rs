//! Jobs: one job (state, steps, result with resource ids, the redacted request, the log),
//! a listing, cancellation, and the job's events as Server-Sent Events, resumable with
//! `Last-Event-ID`.

use super::{caller, send};
use crate::docs::{JobDoc, JobList};
use crate::problem::Problem;
use crate::requests::{Call, Cancelled};
use crate::store::STATE_NAMES;
use crate::Api;
use aetherv_core::JobId;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::convert::Infallible;

/// The most jobs one listing returns.
pub const MAX_LIMIT: usize = 1000;

/// Jobs a listing returns without `limit`.
pub const DEFAULT_LIMIT: usize = 50;

fn job_id(id: &str) -> Result<JobId, Problem> {
    id.parse::<JobId>()
        .map_err(|_| Problem::not_found("no job with this id (job ids are UUIDs)"))
}

/// One job.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs", summary = "Read a job",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job", body = JobDoc),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<JobDoc>, Problem> {
    caller(&api, &headers)?;
    let job = job_id(&id)?;
    let snap = api.store.snapshot();
    let mut doc = snap
        .jobs
        .get(&job)
        .map(|d| JobDoc::clone(d))
        .ok_or_else(|| Problem::not_found("no job with this id"))?;
    api.store.with_journal(&job, |j| {
        if let Some(j) = j {
            doc.steps = j.steps.clone();
            doc.log = j.log.iter().cloned().collect();
        }
    });
    Ok(Json(doc))
}

/// The listing's filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Jobs on this host (its target, or where a cluster job ran).
    pub host: Option<String>,
    /// Jobs in this state.
    pub state: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<usize>,
}

/// Jobs, newest first.
#[utoipa::path(
    get, path = "/api/v1/jobs", tag = "jobs", summary = "List jobs",
    params(JobsQuery),
    responses(
        (status = 200, description = "Jobs, newest first", body = JobList),
        (status = 400, description = "A query parameter is not understood", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown state", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_jobs(
    State(api): State<Api>,
    query: Result<Query<JobsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<JobList>, Problem> {
    caller(&api, &headers)?;
    let Query(q) = query.map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "host and state are text, limit a whole number",
        )
    })?;
    if let Some(s) = &q.state {
        if !STATE_NAMES.contains(&s.as_str()) {
            return Err(Problem::field(
                "state",
                "unknown_choice",
                format!("state must be one of {}", STATE_NAMES.join(", ")),
            ));
        }
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let snap = api.store.snapshot();
    let mut rows: Vec<_> = snap
        .jobs
        .values()
        .map(|j| &j.row)
        .filter(|r| {
            q.host.as_deref().is_none_or(|h| {
                r.target.eq_ignore_ascii_case(h)
                    || r.host.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(h))
            })
        })
        .filter(|r| q.state.as_deref().is_none_or(|s| r.state == s))
        .collect();
    rows.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(b.job_id.cmp(&a.job_id))
    });
    let more = rows.len().saturating_sub(limit);
    Ok(Json(JobList {
        jobs: rows.into_iter().take(limit).cloned().collect(),
        more,
    }))
}

/// Cancels a job (a request awaiting approval, a queued or a running job).
#[utoipa::path(
    delete, path = "/api/v1/jobs/{id}", tag = "jobs", summary = "Cancel a job",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 202, description = "Cancellation asked (a running job stops at its next step)", body = Problem),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may not cancel jobs", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to cancel", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_job(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let who = caller(&api, &headers)?;
        let job = job_id(&id)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let answer = send(
            &api,
            Call::Cancel {
                who,
                job,
                reply: tx,
            },
            rx,
        )
        .await?;
        match answer {
            Cancelled::Accepted(message) => {
                let mut p = Problem::new(StatusCode::ACCEPTED, message);
                p.job_id = Some(job);
                Ok((StatusCode::ACCEPTED, Json(p)).into_response())
            }
            Cancelled::NotFound => Err(Problem::not_found("no job with this id")),
            Cancelled::Forbidden(m) => Err(Problem::new(StatusCode::FORBIDDEN, m)),
            Cancelled::Conflict(m) => Err(Problem::new(StatusCode::CONFLICT, m)),
        }
    };
    match run.await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

/// The job's events as Server-Sent Events (`id` per job from 1, `event` = type, `data` =
/// the event as JSON); ends after the job's last event. `Last-Event-ID` resumes after it.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/events", tag = "jobs", summary = "Follow a job's events",
    params(
        ("id" = String, Path, description = "The job id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This bot does not serve now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn job_events(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let run = || -> Result<Response, Problem> {
        caller(&api, &headers)?;
        let job = job_id(&id)?;
        // Subscribed before the first look at the journal: nothing recorded after it is missed.
        let news = api.store.subscribe();
        if !api.store.snapshot().jobs.contains_key(&job)
            && !api.store.with_journal(&job, |j| j.is_some())
        {
            return Err(Problem::not_found("no job with this id"));
        }
        let after = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Ok(Sse::new(events(api.clone(), job, after, news))
            .keep_alive(KeepAlive::default())
            .into_response())
    };
    match run() {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

/// The stream of a job's journal after event `after`, ending with the job.
fn events(
    api: Api,
    job: JobId,
    after: u64,
    news: tokio::sync::broadcast::Receiver<JobId>,
) -> impl futures::Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::unfold(
        (api, after, news, false),
        move |(api, after, mut news, done)| async move {
            if done {
                return None;
            }
            loop {
                let (next, ended) = api.store.with_journal(&job, |j| match j {
                    None => (None, false),
                    Some(j) => {
                        let i = j.events.partition_point(|e| e.id <= after);
                        (j.events.get(i).cloned(), j.ended)
                    }
                });
                if let Some(e) = next {
                    let data = serde_json::to_string(&e.data).unwrap_or_default();
                    let ev = SseEvent::default()
                        .id(e.id.to_string())
                        .event(e.kind.clone())
                        .data(data);
                    return Some((Ok(ev), (api, e.id, news, e.last)));
                }
                if ended {
                    return None;
                }
                match news.recv().await {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    )
}
