//! The status page at `/`: hosts with their state, free memory and VMs; each host slot with
//! its running job and the queue behind it; recent jobs with live logs; pending approvals
//! with who must still vote. Plain server-rendered HTML ([`html`]) from a plain view
//! ([`view::StatusView`]), a little JavaScript that refreshes it and follows logs over
//! Server-Sent Events, and a sign-in with a token (kept server-side behind an `HttpOnly`,
//! `SameSite=Strict` session cookie). It reads the API's snapshot only: nothing here decides
//! anything.

pub mod build;
pub mod html;
pub mod routes;
pub mod session;
pub mod view;

pub use routes::router;
pub use view::StatusView;

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tests;
