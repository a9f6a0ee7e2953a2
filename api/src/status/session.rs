//! Status-page sessions: a token given once to the sign-in form is checked by the API's
//! authenticator, and the browser gets only a random session id in an `HttpOnly`,
//! `SameSite=Strict` cookie. The token itself is never stored, logged or sent back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "aetherv_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The most sessions kept at once (the oldest is dropped beyond it).
pub const MAX_SESSIONS: usize = 10_000;

/// Open sessions by id.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

#[derive(Debug, Clone)]
struct Session {
    who: String,
    expires: Instant,
}

impl Sessions {
    /// No sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a session for `who`; returns its id (244 random bits, hex).
    pub fn open(&self, who: &str) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let mut open = self.lock();
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS {
            if let Some(oldest) = open
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                open.remove(&oldest);
            }
        }
        open.insert(
            id.clone(),
            Session {
                who: who.to_owned(),
                expires: now + SESSION_TTL,
            },
        );
        id
    }

    /// Who a live session belongs to.
    pub fn who(&self, id: &str) -> Option<String> {
        let open = self.lock();
        open.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.who.clone())
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.open.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
}

/// `Set-Cookie` for a new session (`Secure` when the page is served over HTTPS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_names_its_user_until_closed() {
        let s = Sessions::new();
        let id = s.open("api:ci");
        assert_eq!(id.len(), 64);
        assert_eq!(s.who(&id).as_deref(), Some("api:ci"));
        assert_ne!(s.open("api:ci"), id, "ids are random");
        s.close(&id);
        assert_eq!(s.who(&id), None);
        assert_eq!(s.who("guessed"), None);
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let c = set_cookie("abc", false);
        assert!(c.starts_with("aetherv_session=abc; Path=/; HttpOnly; SameSite=Strict"));
        assert!(!c.contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            axum::http::HeaderValue::from_static("a=1; aetherv_session=xyz ; b=2"),
        );
        assert_eq!(cookie_of(&h).as_deref(), Some("xyz"));
    }
}
