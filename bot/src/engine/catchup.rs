//! Catching up: a bot that just became leader (a standby taking over) rebuilds its state by
//! replaying the event stream. Until that replay is done its view of jobs and approvals is
//! incomplete, so every line is answered with a notice instead of a wrong answer ("No jobs.").

use super::Engine;
use crate::reply::Reply;

/// The reply to a line while the replay runs.
pub(super) fn notice(user: String) -> Reply {
    Reply::Notice {
        user,
        message: "I am catching up with what happened while I was not serving; \
                  ask again in a moment"
            .into(),
    }
}

impl Engine {
    /// Whether the event-stream replay is still running (lines get a catching-up notice).
    pub fn is_catching_up(&self) -> bool {
        self.catching_up
    }

    /// Set by the serve loop: `true` when its replay starts, `false` once it is done.
    pub fn set_catching_up(&mut self, catching_up: bool) {
        self.catching_up = catching_up;
    }
}
