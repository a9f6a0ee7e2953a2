//! Structured entry points for adapters whose platform has forms and buttons (Slack modals,
//! Discord components): submit a whole form and get per-field errors or the job back, vote on
//! a job by id, read the approval view of a job, and read inventory choices for a form given a
//! chosen host; and the read-only questions adapters may ask (jobs, hosts, idleness). They
//! reuse the chat dispatch (roles, validation, policy, publication); nothing here knows a
//! platform's wire format.

use super::{Engine, EngineError};
use crate::reply::{ApprovalView, Reply};
use crate::state::{display, JobSummary, Phase};
use aetherv_core::approval::Decision;
use aetherv_core::command::{CommandName, DeployForm};
use aetherv_core::rbac::Principal;
use aetherv_core::validate::{validate, FieldError, InventoryChoices};
use aetherv_core::JobId;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What became of a submitted form.
#[derive(Debug, Clone, PartialEq)]
pub enum FormOutcome {
    /// The caller may not deploy: the role it needs.
    Refused {
        /// The missing role.
        role: &'static str,
    },
    /// The values do not validate: every problem, one per field.
    Invalid(Vec<FieldError>),
    /// Accepted by validation: the job it created (none when the engine refused later, e.g.
    /// a policy or secrets rule) and what the engine says about it.
    Submitted {
        /// The new job.
        job: Option<JobId>,
        /// The engine's replies (the job opened, its approval request or first thread
        /// messages, or why it was refused).
        out: Vec<Reply>,
    },
}

/// Where a vote left the request.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteResult {
    /// The engine's replies (counted, refused, decided, thread messages).
    pub out: Vec<Reply>,
    /// The decision, once there is one (also when an earlier vote made it).
    pub decision: Option<Decision>,
    /// Whether the vote changed the request (counted, decided it, or found it expired).
    /// `false` when it was refused (role, self-approval, a second vote, already decided):
    /// adapters may then answer only the voter.
    pub changed: bool,
}

impl Engine {
    /// Submits a whole form as `who`: the same roles, validation, policy and publication as
    /// `deploy` typed in chat, but with structured per-field errors for inline display.
    pub async fn submit_form(
        &mut self,
        who: &Principal,
        form: DeployForm,
        fields: &Map<String, Value>,
    ) -> Result<FormOutcome, EngineError> {
        let grants = match self.cfg.rbac.check(who, CommandName::Deploy) {
            Ok(g) => g,
            Err(role) => {
                return Ok(FormOutcome::Refused {
                    role: role.as_str(),
                })
            }
        };
        let Some(schema) = self.forms.get(form.form_id()) else {
            return Ok(FormOutcome::Invalid(Vec::new()));
        };
        if let Err(errors) = validate(
            schema,
            &Value::Object(fields.clone()),
            &self.validation_context(),
        ) {
            return Ok(FormOutcome::Invalid(errors));
        }
        let text: BTreeMap<String, String> = fields
            .iter()
            .filter_map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => return None,
                    other => other.to_string(),
                };
                Some((k.clone(), s))
            })
            .collect();
        let out = match self.prepare_deploy(form, text) {
            super::Prepared::Ready(kind, target, spec) => {
                // The gate's errors go inline, like validation's.
                if let Err(errors) =
                    crate::gate::check(&self.state, &self.forms, kind, &target, &spec)
                {
                    return Ok(FormOutcome::Invalid(errors));
                }
                self.submit_gated(who, &grants, kind, target, spec).await?
            }
            super::Prepared::Invalid(errors) => return Ok(FormOutcome::Invalid(errors)),
            super::Prepared::Refused(message) => {
                vec![super::notice(&display(&who.id), message)]
            }
        };
        let job = opened(&out);
        Ok(FormOutcome::Submitted { job, out })
    }

    /// Validates a form filled in steps (a page of a Discord modal chain): the values so far
    /// against the form with the same validation as [`Engine::submit_form`], keeping the
    /// errors of `fields` (the step just filled) only; nothing is published. An unknown form
    /// has no errors here; `submit_form` refuses it.
    pub fn check_fields(
        &self,
        form: DeployForm,
        values: &Map<String, Value>,
        fields: &[String],
    ) -> Vec<FieldError> {
        let Some(schema) = self.forms.get(form.form_id()) else {
            return Vec::new();
        };
        match validate(
            schema,
            &Value::Object(values.clone()),
            &self.validation_context(),
        ) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .filter(|e| fields.contains(&e.field))
                .collect(),
        }
    }

    /// A vote on job `job` by `who` (a button click): roles checked as for `approve`/`reject`.
    pub async fn vote(
        &mut self,
        who: &Principal,
        job: JobId,
        approve: bool,
        reason: Option<String>,
    ) -> Result<VoteResult, EngineError> {
        let name = if approve {
            CommandName::Approve
        } else {
            CommandName::Reject
        };
        let out = match self.cfg.rbac.check(who, name) {
            Ok(grants) => {
                self.command_vote(who, &grants, Some(&job.to_string()), approve, reason)
                    .await?
            }
            Err(role) => vec![Reply::Refused {
                user: display(&who.id),
                command: if approve { "approve" } else { "reject" }.into(),
                role: role.as_str().into(),
            }],
        };
        let changed = out
            .iter()
            .any(|r| matches!(r, Reply::VoteCounted { .. } | Reply::ApprovalDecided { .. }));
        Ok(VoteResult {
            out,
            decision: self.decision(job),
            changed,
        })
    }

    /// The decision on a job's approval, if one was made.
    pub fn decision(&self, job: JobId) -> Option<Decision> {
        let info = self.state.jobs.get(&job)?;
        if info.phase == Phase::Expired {
            return Some(Decision::Expired);
        }
        info.approval.as_ref().and_then(|p| p.decision.clone())
    }

    /// The approval request of a job awaiting approval (fields redacted), for adapters that
    /// render it with buttons.
    pub fn approval_view(&self, job: JobId) -> Option<ApprovalView> {
        let info = self.state.jobs.get(&job)?;
        let p = info.approval.as_ref()?;
        Some(ApprovalView {
            short: info.short(),
            rule: info.rule.clone().unwrap_or_default(),
            required: p.required,
            groups: p.groups.join(", "),
            expires_at: p
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            requester: display(&p.requester),
            kind: info.kind.clone(),
            target: info.target.clone(),
            fields: info
                .envelope
                .as_ref()
                .map(|e| super::approvals::redacted(&e.spec))
                .unwrap_or_default(),
        })
    }

    /// The state rebuilt from the event stream, read-only: what a front door that serves
    /// reads (the HTTP API's snapshot of jobs, hosts and inventory) may know.
    pub fn view(&self) -> &crate::state::State {
        &self.state
    }

    /// Every job the bot knows, oldest id first.
    pub fn jobs(&self) -> Vec<JobSummary> {
        self.state.jobs.values().map(|j| j.summary()).collect()
    }

    /// One job.
    pub fn job(&self, job: JobId) -> Option<JobSummary> {
        self.state.jobs.get(&job).map(|j| j.summary())
    }

    /// The job with this id or unique id prefix.
    pub fn find_job(&self, id: &str) -> Option<JobId> {
        self.state.find_job(id)
    }

    /// The names of the hosts the bot knows (configured or reported), lower case.
    pub fn hosts(&self) -> Vec<String> {
        self.state.hosts.keys().cloned().collect()
    }

    /// Inventory choices for a form, narrowed to one host's networks and storage classes when
    /// `host` is given and that host reported an inventory (dependent choices).
    pub fn form_choices(&self, host: Option<&str>) -> InventoryChoices {
        let mut all = self.state.choices();
        let Some(h) = host.and_then(|h| {
            self.state
                .hosts
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(h))
                .map(|(_, info)| info)
        }) else {
            return all;
        };
        if !h.networks.is_empty() {
            all.networks = Some(h.networks.clone());
        }
        if !h.storage_classes.is_empty() {
            all.storage_classes = Some(h.storage_classes.clone());
        }
        all
    }
}

/// The job a call created, from its replies.
pub fn opened(replies: &[Reply]) -> Option<JobId> {
    replies.iter().find_map(|r| match r {
        Reply::JobOpened(v) => Some(v.job),
        _ => None,
    })
}
