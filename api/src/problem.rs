//! Errors as RFC 9457 problem details (`application/problem+json`), with the gate's field
//! errors in an `errors` extension: `[{field, code, message}]`.

use aetherv_core::contract::request::RequestError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of a problem.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field's problem (the gate's and validation's field errors, as on the AMQP wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldProblem {
    /// The field id (empty: the request as a whole).
    pub field: String,
    /// A stable code (`required`, `name_in_use`, `not_found`, …).
    pub code: String,
    /// A sentence for people; never repeats a value that did not parse.
    pub message: String,
}

impl From<RequestError> for FieldProblem {
    fn from(e: RequestError) -> Self {
        FieldProblem {
            field: e.field,
            code: e.code,
            message: e.message,
        }
    }
}

/// A problem details document (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A short summary of the problem type.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// This occurrence, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every field problem (validation and the gate).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// The job the request named, when there is one (an idempotent replay, a conflict).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub job_id: Option<aetherv_core::JobId>,
    /// Seconds to wait before retrying (503).
    #[serde(skip)]
    pub retry_after: Option<u32>,
    /// The `WWW-Authenticate` challenge (401).
    #[serde(skip)]
    pub challenge: bool,
}

impl Problem {
    /// A problem with a status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: Some(detail.into()),
            errors: Vec::new(),
            job_id: None,
            retry_after: None,
            challenge: false,
        }
    }

    /// 401 with a `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem {
            challenge: true,
            ..Problem::new(StatusCode::UNAUTHORIZED, detail)
        }
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after: u32) -> Self {
        Problem {
            retry_after: Some(retry_after),
            ..Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
        }
    }

    /// The refusal of a request by the engine: 403 for a missing role, 409 for a name in
    /// use or a job id owned by someone else, else 422 with every field error.
    pub fn refused(errors: Vec<RequestError>) -> Self {
        let status = if errors.iter().any(|e| e.code == "forbidden") {
            StatusCode::FORBIDDEN
        } else if errors
            .iter()
            .any(|e| e.code == "name_in_use" || e.code == "duplicate")
        {
            StatusCode::CONFLICT
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let detail = match status {
            StatusCode::FORBIDDEN => errors
                .iter()
                .find(|e| e.code == "forbidden")
                .map(|e| e.message.clone())
                .unwrap_or_else(|| "forbidden".into()),
            StatusCode::CONFLICT => "the request conflicts with an existing resource".into(),
            _ => "the request has invalid fields".into(),
        };
        Problem {
            kind: match status {
                StatusCode::UNPROCESSABLE_ENTITY => "urn:aetherv:problem:validation",
                StatusCode::CONFLICT => "urn:aetherv:problem:conflict",
                _ => "about:blank",
            },
            errors: errors.into_iter().map(FieldProblem::from).collect(),
            ..Problem::new(status, detail)
        }
    }

    /// One field error (422).
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Problem::refused(vec![RequestError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }])
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        if self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"aetherv\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str) -> RequestError {
        RequestError {
            field: "vm_name".into(),
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn refusals_map_to_403_409_and_422() {
        assert_eq!(Problem::refused(vec![err("forbidden")]).status, 403);
        assert_eq!(
            Problem::refused(vec![err("required"), err("name_in_use")]).status,
            409
        );
        let p = Problem::refused(vec![err("required")]);
        assert_eq!(p.status, 422);
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["errors"][0]["field"], "vm_name");
        assert_eq!(v["type"], "urn:aetherv:problem:validation");
    }
}
