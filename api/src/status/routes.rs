//! The status page's routes: `/` (the page, or a redirect to `/login`), `/login` (the form, and
//! its POST that opens a session), `/logout`, `/status/fragment` (what the script refreshes),
//! `/status/jobs/{id}/log` (a job's log lines as Server-Sent Events, resumable with
//! `Last-Event-ID`) and `/status/static/*`. A caller is signed in by the session cookie or an
//! `Authorization: Bearer` header, both checked by the API's authenticator.

use super::session::{clear_cookie, cookie_of, set_cookie, Sessions};
use super::{build, html};
use crate::Api;
use aetherv_core::JobId;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

const SCRIPT: &str = include_str!("../../static/status.js");
const STYLE: &str = include_str!("../../static/status.css");

/// No inline script or style, nothing from elsewhere, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The page's routes, to merge into the API's router (state: the [`Api`]).
pub fn router() -> Router<Api> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/status/fragment", get(fragment))
        .route("/status/jobs/{id}/log", get(job_log))
        .route("/status/static/status.js", get(script))
        .route("/status/static/status.css", get(style))
        .layer(Extension(Arc::new(Sessions::new())))
}

/// Who is signed in: the session cookie's user, else a valid bearer token's principal.
fn signed_in(api: &Api, sessions: &Sessions, headers: &HeaderMap) -> Option<String> {
    if let Some(who) = cookie_of(headers).and_then(|id| sessions.who(&id)) {
        return Some(who);
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    api.authenticator()
        .authenticate(Some(auth), chrono::Utc::now())
        .ok()
        .map(|p| aetherv_bot::state::display(&p.id))
}

fn html_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn index(
    State(api): State<Api>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
) -> Response {
    match signed_in(&api, &sessions, &headers) {
        Some(who) => {
            let view = build::from_store(&api.store, &who, chrono::Utc::now());
            html_response(StatusCode::OK, html::page(&view))
        }
        None => Redirect::to("/login").into_response(),
    }
}

async fn fragment(
    State(api): State<Api>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
) -> Response {
    match signed_in(&api, &sessions, &headers) {
        Some(who) => {
            let view = build::from_store(&api.store, &who, chrono::Utc::now());
            html_response(StatusCode::OK, html::fragment(&view))
        }
        None => html_response(StatusCode::UNAUTHORIZED, "sign in at /login".into()),
    }
}

async fn login_form(
    State(api): State<Api>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
) -> Response {
    if signed_in(&api, &sessions, &headers).is_some() {
        return Redirect::to("/").into_response();
    }
    html_response(StatusCode::OK, html::login(None, false))
}

/// The sign-in form's body.
#[derive(Deserialize)]
pub struct LoginForm {
    /// An API bearer token or an OIDC access token.
    token: String,
}

async fn login(
    State(api): State<Api>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let refused = || {
        html_response(
            StatusCode::UNAUTHORIZED,
            html::login(Some("That token is not valid here."), false),
        )
    };
    let Ok(Form(form)) = form else {
        return refused();
    };
    let token = form.token.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return refused();
    }
    let who = match api
        .authenticator()
        .authenticate(Some(&format!("Bearer {token}")), chrono::Utc::now())
    {
        Ok(p) => aetherv_bot::state::display(&p.id),
        Err(_) => return refused(),
    };
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let id = sessions.open(&who);
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&id, secure)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(Extension(sessions): Extension<Arc<Sessions>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_of(&headers) {
        sessions.close(&id);
    }
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Where a log stream starts.
#[derive(Deserialize)]
pub struct LogQuery {
    /// The journal id the page already shows lines up to.
    after: Option<u64>,
}

async fn job_log(
    State(api): State<Api>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if signed_in(&api, &sessions, &headers).is_none() {
        return html_response(StatusCode::UNAUTHORIZED, "sign in at /login".into());
    }
    let Ok(job) = id.parse::<JobId>() else {
        return html_response(StatusCode::NOT_FOUND, "no such job".into());
    };
    // Subscribed before the first look at the journal: nothing recorded after it is missed.
    let news = api.store.subscribe();
    if !api.store.snapshot().jobs.contains_key(&job)
        && !api.store.with_journal(&job, |j| j.is_some())
    {
        return html_response(StatusCode::NOT_FOUND, "no such job".into());
    }
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| query.ok().and_then(|Query(q)| q.after))
        .unwrap_or(0);
    Sse::new(log_lines(api, job, after, news))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A job's `job.log` events after journal id `after`, one SSE message each (`event: log`,
/// the lines as data, the journal id as id), then `event: end` once the job ended.
fn log_lines(
    api: Api,
    job: JobId,
    after: u64,
    news: tokio::sync::broadcast::Receiver<JobId>,
) -> impl futures::Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::unfold(
        (api, after, news, false),
        move |(api, mut after, mut news, done)| async move {
            if done {
                return None;
            }
            loop {
                let (next, cursor, ended) = api.store.with_journal(&job, |j| {
                    let Some(j) = j else {
                        return (None, after, false);
                    };
                    let start = j.events.partition_point(|e| e.id <= after);
                    let mut cursor = after;
                    for e in &j.events[start..] {
                        cursor = e.id;
                        if e.kind == "job.log" {
                            return (Some((e.id, lines_of(&e.data))), cursor, false);
                        }
                    }
                    (None, cursor, j.ended)
                });
                if let Some((id, lines)) = next {
                    let ev = SseEvent::default()
                        .id(id.to_string())
                        .event("log")
                        .data(lines);
                    return Some((Ok(ev), (api, id, news, false)));
                }
                if ended {
                    let ev = SseEvent::default()
                        .id(cursor.to_string())
                        .event("end")
                        .data("");
                    return Some((Ok(ev), (api, cursor, news, true)));
                }
                after = cursor;
                match news.recv().await {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    )
}

/// The text of a `job.log` journal entry's lines, one per line.
fn lines_of(data: &serde_json::Value) -> String {
    data.pointer("/payload/lines")
        .and_then(|v| v.as_array())
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l.get("text").and_then(|t| t.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

async fn script() -> Response {
    static_file(SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    static_file(STYLE, "text/css; charset=utf-8")
}

fn static_file(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}
