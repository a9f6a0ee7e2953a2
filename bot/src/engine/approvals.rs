//! Submission, approvals and publication: the policy decides whether a request needs
//! approval; votes go through the core state machine; an approved job is published exactly
//! once (from the deciding vote, or after a restart when the approval was recorded but the job
//! was not); a requester may cancel a request awaiting approval.

use super::{notice, Engine, EngineError};
use crate::reply::{ApprovalView, Outcome, Reply};
use crate::state::{display, short_id, Phase};
use aetherv_core::approval::{Decision, PendingApproval, RequestFacts, VoteError, VoteOutcome};
use aetherv_core::contract::job::Approval;
use aetherv_core::rbac::{Grants, Principal, Role};
use aetherv_core::validate::FieldError;
use aetherv_core::{EventBody, JobEnvelope, JobId, JobKind, Origin, Target};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

/// A spec as approvers see it: secret values redacted.
pub(super) fn redacted(spec: &Map<String, Value>) -> Map<String, Value> {
    let mut v = Value::Object(spec.clone());
    aetherv_core::ops::redact(&mut v);
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn vote_text(e: &VoteError) -> String {
    match e {
        VoteError::SelfApproval => "you cannot approve your own request".into(),
        VoteError::NotInGroup { groups } => {
            format!(
                "only members of {} may vote on this request",
                groups.join(", ")
            )
        }
        VoteError::AlreadyVoted => "you already approved this request".into(),
        VoteError::AlreadyDecided(Decision::Approved { by }) => format!(
            "already approved by {}",
            by.iter().map(display).collect::<Vec<_>>().join(", ")
        ),
        VoteError::AlreadyDecided(Decision::Rejected { by, .. }) => {
            format!("already rejected by {}", display(by))
        }
        VoteError::AlreadyDecided(Decision::Expired) => "the request has expired".into(),
        _ => e.to_string(),
    }
}

/// How the gate's refusal is shown: a deploy's field errors next to the form's fields; for a
/// command on an existing VM (`vm …`, `disk …`, `nic …`) one line naming each field.
pub(super) fn refusal(who: &Principal, kind: JobKind, errors: Vec<FieldError>) -> Reply {
    let user = display(&who.id);
    match kind {
        JobKind::VmCreate | JobKind::DeploymentManaged => {
            let form = aetherv_core::schema::form_id_for(kind).unwrap_or("vm");
            super::form_errors(&user, form, errors)
        }
        _ => {
            let problems: Vec<String> = errors
                .iter()
                .map(|e| {
                    if e.field.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{}: {}", e.field, e.message)
                    }
                })
                .collect();
            notice(
                &user,
                format!(
                    "refused before approval ({}): {}",
                    kind.as_str(),
                    problems.join("; ")
                ),
            )
        }
    }
}

impl Engine {
    /// The gate, then [`Engine::submit_gated`].
    pub(super) async fn submit(
        &mut self,
        who: &Principal,
        grants: &Grants,
        kind: JobKind,
        target: Target,
        spec: Map<String, Value>,
    ) -> Result<Vec<Reply>, EngineError> {
        // The gate: a request certain to fail never reaches an approver or a worker.
        if let Err(errors) = crate::gate::check(&self.state, &self.forms, kind, &target, &spec) {
            return Ok(vec![refusal(who, kind, errors)]);
        }
        self.submit_gated(who, grants, kind, target, spec).await
    }

    /// A request that passed the gate: policy check, then either an approval request or
    /// publication.
    pub(super) async fn submit_gated(
        &mut self,
        who: &Principal,
        grants: &Grants,
        kind: JobKind,
        target: Target,
        spec: Map<String, Value>,
    ) -> Result<Vec<Reply>, EngineError> {
        let env = JobEnvelope::new(kind, target, spec, who.id.clone());
        self.submit_envelope(who, grants, env).await
    }

    /// [`Engine::submit_gated`] for a ready envelope (an AMQP request keeps its job id and
    /// sealed secrets): origin, sealing, policy, then an approval request or publication.
    pub(super) async fn submit_envelope(
        &mut self,
        who: &Principal,
        grants: &Grants,
        mut env: JobEnvelope,
    ) -> Result<Vec<Reply>, EngineError> {
        let kind = env.kind;
        // Approvers see that a secret is set (redacted), not its value.
        let shown = redacted(&env.spec);
        env.origin = Some(Origin {
            platform: self.cfg.platform,
            channel: self.cfg.channel.clone(),
            thread: None,
        });
        if let Err(e) = env.seal_secrets(&self.cfg.recipients) {
            let msg = format!("the request's secret fields cannot be sealed: {e}");
            return Ok(vec![notice(&display(&who.id), msg)]);
        }
        let target_name = env.target.routing_key();
        let target_plain = target_name.trim_start_matches("cluster.").to_string();
        let req = self.cfg.policy.evaluate(&RequestFacts {
            kind: kind.as_str(),
            target: &target_plain,
            spec: &env.spec,
            roles: &grants.roles,
        });
        let Some(req) = req else {
            let opened = Reply::JobOpened(self.state.insert_job(env.clone()).view());
            let mut out = vec![opened];
            out.extend(self.publish(env).await?);
            return Ok(out);
        };
        let expires_at = chrono::Utc::now() + req.ttl;
        let view = ApprovalView {
            short: short_id(&env.job_id),
            rule: req.rule.clone(),
            required: req.required,
            groups: req.groups.join(", "),
            expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            requester: display(&who.id),
            kind: kind.as_str().into(),
            target: target_name,
            fields: shown,
        };
        let job_id = env.job_id;
        let mut request_env = env.clone();
        request_env.spec = redacted(&env.spec);
        let info = self.state.insert_job(env);
        let opened = Reply::JobOpened(info.view());
        info.rule = Some(req.rule.clone());
        info.approval = Some(PendingApproval::new(
            who.id.clone(),
            req.required,
            req.groups.clone(),
            expires_at,
        ));
        self.emit(
            job_id,
            EventBody::ApprovalRequested {
                required: req.required,
                groups: req.groups,
                expires_at,
                request: json!({"rule": req.rule, "envelope": request_env}),
            },
        )
        .await?;
        Ok(vec![
            opened,
            Reply::ApprovalRequested {
                job: job_id,
                view,
                restored: false,
            },
        ])
    }

    /// The decision reply of a job's request.
    pub(super) fn decided(&self, job: JobId, decision: Decision, cancelled: bool) -> Vec<Reply> {
        self.approval_view(job)
            .map(|view| Reply::ApprovalDecided {
                job,
                view,
                decision,
                cancelled,
            })
            .into_iter()
            .collect()
    }

    /// Publishes an (approved or approval-free) job and opens its thread.
    pub(super) async fn publish(&mut self, env: JobEnvelope) -> Result<Vec<Reply>, EngineError> {
        let headers: aetherv_broker::Headers = match &self.cfg.signer {
            Some(key) => key
                .sign(&env)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            None => Default::default(),
        };
        self.broker.publish_job_with(&env, &headers).await?;
        let job = env.job_id;
        self.emit(
            job,
            EventBody::JobQueued {
                target: env.target.routing_key(),
                kind: env.kind.as_str().into(),
            },
        )
        .await?;
        Ok(self.refresh(job, Instant::now()))
    }

    pub(super) async fn command_vote(
        &mut self,
        who: &Principal,
        grants: &Grants,
        id: Option<&str>,
        approve: bool,
        reason: Option<String>,
    ) -> Result<Vec<Reply>, EngineError> {
        let user = display(&who.id);
        let job = if let Some(id) = id {
            self.state.find_job(id)
        } else {
            let open: Vec<JobId> = self
                .state
                .jobs
                .values()
                .filter(|j| j.phase == Phase::AwaitingApproval)
                .map(|j| j.job_id)
                .collect();
            match open[..] {
                [one] => Some(one),
                _ => None,
            }
        };
        let Some(info) = job.and_then(|j| self.state.jobs.get_mut(&j)) else {
            return Ok(vec![notice(
                &user,
                match id {
                    None => {
                        "no single request awaits approval; name one with `approve ID`".to_string()
                    }
                    Some(id) => format!("no pending request matches {id}"),
                },
            )]);
        };
        let short = info.short();
        let job_id = info.job_id;
        let refused = |message: String| {
            Ok(vec![Reply::VoteRefused {
                job: Some(job_id),
                user: user.clone(),
                message,
            }])
        };
        if info.phase == Phase::Cancelled {
            return refused(format!("job {short} was cancelled by its requester"));
        }
        let Some(pending) = info.approval.as_mut() else {
            return Ok(vec![notice(
                &user,
                format!("job {short} needs no approval"),
            )]);
        };
        let outcome = pending.vote(
            &who.id,
            &grants.groups,
            approve,
            reason.clone(),
            chrono::Utc::now(),
        );
        match outcome {
            Err(VoteError::AlreadyDecided(Decision::Expired)) if info.phase != Phase::Expired => {
                self.emit(job_id, EventBody::ApprovalExpired {}).await?;
                Ok(self.decided(job_id, Decision::Expired, false))
            }
            Err(e) => refused(vote_text(&e)),
            Ok(VoteOutcome::Counted { granted, required }) => {
                self.emit(
                    job_id,
                    EventBody::ApprovalGranted {
                        by: who.id.clone(),
                        granted,
                        required,
                    },
                )
                .await?;
                Ok(vec![Reply::VoteCounted {
                    job: job_id,
                    short,
                    voter: user.clone(),
                    granted,
                    required,
                }])
            }
            Ok(VoteOutcome::Rejected) => {
                self.emit(
                    job_id,
                    EventBody::ApprovalRejected {
                        by: who.id.clone(),
                        reason: reason.clone(),
                    },
                )
                .await?;
                let decision = Decision::Rejected {
                    by: who.id.clone(),
                    reason,
                };
                Ok(self.decided(job_id, decision, false))
            }
            Ok(VoteOutcome::Approved(approval)) => {
                let granted = u32::try_from(approval.approved_by.len()).unwrap_or(u32::MAX);
                self.emit(
                    job_id,
                    EventBody::ApprovalGranted {
                        by: who.id.clone(),
                        granted,
                        required: granted,
                    },
                )
                .await?;
                self.publish_approved(job_id, approval).await
            }
        }
    }

    /// Publishes an approved job (called exactly once per approval: from the vote that
    /// completed it, or after a restart when the approval was recorded but the job was not).
    pub(super) async fn publish_approved(
        &mut self,
        job_id: JobId,
        approval: Approval,
    ) -> Result<Vec<Reply>, EngineError> {
        let Some(info) = self.state.jobs.get_mut(&job_id) else {
            return Ok(Vec::new());
        };
        let Some(mut env) = info.envelope.clone() else {
            return Ok(Vec::new());
        };
        let short = short_id(&job_id);
        if env
            .spec
            .values()
            .any(|v| v.as_str() == Some(aetherv_core::redact::REDACTED))
        {
            // Rebuilt from events, which never hold secrets: the values are gone.
            info.finished = true;
            let (kind, target) = (info.kind.clone(), info.target.clone());
            self.emit(
                job_id,
                EventBody::JobFailed {
                    code: "secrets_lost".into(),
                    message: "secret fields were lost in a bot restart".into(),
                    step: None,
                },
            )
            .await?;
            let message =
                "approved, but its secret fields were lost in a bot restart; please request it again";
            return Ok(vec![Reply::JobFinished {
                job: job_id,
                short,
                kind,
                target,
                outcome: Outcome::Failed {
                    step: None,
                    code: "secrets_lost".into(),
                    message: message.into(),
                },
                log: None,
            }]);
        }
        let decision = Decision::Approved {
            by: approval.approved_by.clone(),
        };
        env.approval = Some(approval);
        let mut out = self.decided(job_id, decision, false);
        out.extend(self.publish(env).await?);
        Ok(out)
    }

    pub(super) async fn command_cancel(
        &mut self,
        who: &Principal,
        grants: &Grants,
        id: &str,
    ) -> Result<Vec<Reply>, EngineError> {
        let user = display(&who.id);
        let Some(job) = self.state.find_job(id) else {
            return Ok(vec![notice(&user, format!("no job matches {id}"))]);
        };
        let Some(info) = self.state.jobs.get_mut(&job) else {
            return Ok(Vec::new());
        };
        let short = info.short();
        let is_requester = info.requester.as_ref() == Some(&who.id);
        match info.phase {
            Phase::AwaitingApproval => {}
            Phase::Queued | Phase::Running | Phase::Interrupted => {
                if !is_requester && !grants.has(Role::Admin) {
                    let msg = "only the requester or an admin can cancel a job";
                    return Ok(vec![notice(&user, msg)]);
                }
                let phase = info.phase;
                self.emit(job, EventBody::JobCancelRequested { by: who.id.clone() })
                    .await?;
                let msg = if phase == Phase::Queued {
                    format!("cancelling job {short}: it is dropped when its host slot reaches it")
                } else {
                    format!(
                        "cancelling job {short}: it stops at its next step boundary (an operation in flight on the host finishes first)"
                    )
                };
                return Ok(vec![notice(&user, msg)]);
            }
            other => {
                let msg = format!(
                    "job {short} is {}; there is nothing to cancel",
                    other.as_str()
                );
                return Ok(vec![notice(&user, msg)]);
            }
        }
        if !is_requester {
            return Ok(vec![notice(
                &user,
                "only the requester can cancel a request",
            )]);
        }
        self.emit(
            job,
            EventBody::JobCancelled {
                by: Some(who.id.clone()),
            },
        )
        .await?;
        let decision = Decision::Rejected {
            by: who.id.clone(),
            reason: Some("cancelled".into()),
        };
        Ok(self.decided(job, decision, true))
    }
}
