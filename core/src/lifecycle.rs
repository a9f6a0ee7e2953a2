//! The job lifecycle: where a job is, as a state machine driven by events alone.
//!
//! Every process that follows jobs (the bot, the HTTP API, a status page) projects the event
//! stream through [`Phase::next`]; nothing sets a phase by hand, so a replayed stream arrives at
//! the same phases as the live one.
//!
//! ```text
//!            approval.requested            approval.granted (last) … job.queued
//!   (new) ───────────────────▶ AwaitingApproval ─────────────────────────────▶ Queued
//!     │                          │ approval.rejected → Rejected                  │ job.started
//!     │ job.queued               │ approval.expired  → Expired                   ▼
//!     └────────────────────────▶ │ job.cancelled     → Cancelled      Running ◀─┴─ job.resumed
//!                                                                         │ job.interrupted → Interrupted
//!                                            job.succeeded / failed / cancelled → final
//! ```

use crate::contract::event::EventBody;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Waiting for approvals.
    AwaitingApproval,
    /// Vetoed.
    Rejected,
    /// Approval expired.
    Expired,
    /// Published; waiting for its host slot.
    Queued,
    /// A worker runs it.
    Running,
    /// A worker stopped mid-job; it will be redelivered.
    Interrupted,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl Phase {
    /// The phase of a job before any of its events: requested, about to be queued.
    pub const INITIAL: Phase = Phase::Queued;

    /// Every phase.
    pub const ALL: [Phase; 9] = [
        Phase::AwaitingApproval,
        Phase::Rejected,
        Phase::Expired,
        Phase::Queued,
        Phase::Running,
        Phase::Interrupted,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Cancelled,
    ];

    /// The word shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::AwaitingApproval => "awaiting approval",
            Phase::Rejected => "rejected",
            Phase::Expired => "expired",
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Interrupted => "interrupted, will resume",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
        }
    }

    /// True when nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Rejected | Phase::Expired | Phase::Succeeded | Phase::Failed | Phase::Cancelled
        )
    }

    /// The phase after `ev`. Events that say nothing about the phase (steps, logs, votes that
    /// do not decide, inventory) leave it as it is; a final phase is only left for another
    /// final outcome the worker reports (a late `job.failed` after `job.cancelled` is not
    /// possible, but a worker's verdict always wins over the bot's guess).
    pub fn next(self, ev: &EventBody) -> Phase {
        match ev {
            EventBody::ApprovalRequested { .. } if !self.is_final() => Phase::AwaitingApproval,
            EventBody::ApprovalRejected { .. } if self == Phase::AwaitingApproval => {
                Phase::Rejected
            }
            EventBody::ApprovalExpired {} if self == Phase::AwaitingApproval => Phase::Expired,
            EventBody::JobQueued { .. } if self == Phase::AwaitingApproval => Phase::Queued,
            EventBody::JobStarted { .. } | EventBody::JobResumed { .. } if !self.is_final() => {
                Phase::Running
            }
            EventBody::JobInterrupted { .. } if !self.is_final() => Phase::Interrupted,
            EventBody::JobSucceeded { .. } => Phase::Succeeded,
            EventBody::JobFailed { .. } => Phase::Failed,
            EventBody::JobCancelled { .. } => Phase::Cancelled,
            _ => self,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::job::{Platform, Requester};
    use serde_json::json;

    fn who() -> Requester {
        Requester {
            platform: Platform::Console,
            user_id: "bob".into(),
        }
    }

    fn run(events: &[EventBody]) -> Phase {
        events.iter().fold(Phase::INITIAL, |p, e| p.next(e))
    }

    fn requested() -> EventBody {
        EventBody::ApprovalRequested {
            required: 1,
            groups: vec!["approvers".into()],
            expires_at: chrono::Utc::now(),
            request: json!({}),
        }
    }

    fn queued() -> EventBody {
        EventBody::JobQueued {
            target: "hv01".into(),
            kind: "noop".into(),
        }
    }

    fn started() -> EventBody {
        EventBody::JobStarted {
            host: "hv01".into(),
            worker: "w".into(),
            attempt: 1,
        }
    }

    #[test]
    fn an_approved_job_runs_to_its_outcome() {
        let granted = EventBody::ApprovalGranted {
            by: who(),
            granted: 1,
            required: 1,
        };
        assert_eq!(run(&[requested()]), Phase::AwaitingApproval);
        assert_eq!(
            run(&[requested(), granted.clone()]),
            Phase::AwaitingApproval
        );
        assert_eq!(
            run(&[requested(), granted.clone(), queued()]),
            Phase::Queued
        );
        let done = EventBody::JobSucceeded { result: json!({}) };
        assert_eq!(
            run(&[requested(), granted, queued(), started(), done]),
            Phase::Succeeded
        );
    }

    #[test]
    fn vetoes_expiry_and_cancellation_are_final() {
        let rejected = EventBody::ApprovalRejected {
            by: who(),
            reason: None,
        };
        assert_eq!(run(&[requested(), rejected.clone()]), Phase::Rejected);
        assert_eq!(
            run(&[requested(), EventBody::ApprovalExpired {}]),
            Phase::Expired
        );
        // A late queue or start event does not revive a decided request.
        assert_eq!(
            run(&[requested(), rejected, queued(), started()]),
            Phase::Rejected
        );
        let cancelled = EventBody::JobCancelled { by: Some(who()) };
        assert_eq!(run(&[requested(), cancelled]), Phase::Cancelled);
        // A rejection of a job that needs no approval changes nothing.
        let stray = EventBody::ApprovalRejected {
            by: who(),
            reason: None,
        };
        assert_eq!(run(&[queued(), stray]), Phase::Queued);
    }

    #[test]
    fn an_interrupted_job_resumes_and_the_worker_has_the_last_word() {
        let interrupted = EventBody::JobInterrupted {
            reason: "worker stopping".into(),
        };
        assert_eq!(
            run(&[queued(), started(), interrupted.clone()]),
            Phase::Interrupted
        );
        let resumed = EventBody::JobResumed { attempt: 2 };
        assert_eq!(
            run(&[queued(), started(), interrupted, resumed]),
            Phase::Running
        );
        let failed = EventBody::JobFailed {
            code: "x".into(),
            message: "y".into(),
            step: None,
        };
        assert_eq!(run(&[queued(), started(), failed.clone()]), Phase::Failed);
        // Once final, start/interrupt do not move it back.
        assert_eq!(run(&[queued(), failed, started()]), Phase::Failed);
        assert!(Phase::ALL.iter().filter(|p| p.is_final()).count() == 5);
    }
}
