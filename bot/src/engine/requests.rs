//! Requests from AMQP producers: the same path as a chat submission (schema validation, the
//! gate, roles, policy and approval, publication), with the producer's verified RabbitMQ user
//! as the principal. Every outcome is a reply to the request's `reply_to` (when set) and a
//! `request.accepted` / `request.rejected` event; a request that waited for approval also
//! gets a reply when it is approved, rejected or expires.

use super::{Engine, EngineError};
use crate::reply::Reply;
use aetherv_broker::RequestDelivery;
use aetherv_core::contract::request::{JobRequest, ReplyStatus, RequestError, RequestReply};
use aetherv_core::ops::JobSpec;
use aetherv_core::rbac::{required_role_for_kind, Principal};
use aetherv_core::validate::{validate, ErrorCode, FieldError};
use aetherv_core::{EventBody, JobEnvelope, JobId, Requester};
use serde_json::{Map, Value};

/// Where a producer waits for news of its request.
#[derive(Debug, Clone)]
pub(super) struct ReplyAddress {
    reply_to: String,
    correlation_id: Option<String>,
}

/// A request-level problem (not about one field).
fn request_error(field: &str, code: &str, message: impl Into<String>) -> RequestError {
    RequestError {
        field: field.to_owned(),
        code: code.to_owned(),
        message: message.into(),
    }
}

/// What became of a request ([`Engine::submit_request`]).
#[derive(Debug)]
pub enum RequestOutcome {
    /// The job was created: queued, or awaiting approval.
    Accepted {
        /// The new job.
        job: JobId,
        /// Whether it waits for approval.
        awaiting_approval: bool,
        /// What chat is told about it (the job opened, its approval request).
        replies: Vec<Reply>,
    },
    /// The request's job id names a job this requester made already: that job.
    Existing {
        /// The job.
        job: JobId,
        /// Whether it still waits for approval.
        awaiting_approval: bool,
        /// Nothing new for chat.
        replies: Vec<Reply>,
    },
    /// Refused: every problem found.
    Rejected {
        /// One per field (an empty field: the request as a whole).
        errors: Vec<RequestError>,
    },
}

impl Engine {
    /// Handles one request from the requests queue and settles it: malformed bodies are
    /// dead-lettered with their contract reason; everything else is answered and acked.
    pub async fn handle_request(
        &mut self,
        delivery: RequestDelivery,
    ) -> Result<Vec<Reply>, EngineError> {
        let address = delivery.reply_to.clone().map(|reply_to| ReplyAddress {
            reply_to,
            correlation_id: delivery.correlation_id.clone(),
        });
        let by = delivery.user_id.as_deref().map(|u| Principal::amqp(u).id);
        let correlation_id = delivery.correlation_id.clone();
        let request = match JobRequest::from_slice(&delivery.body) {
            Ok(r) => r,
            Err(e) => {
                // The detail is for the dead-letter queue; the producer gets the code only,
                // never a value that did not parse.
                let error = request_error(
                    "",
                    e.code(),
                    "the request does not match job-request.schema.json",
                );
                self.refuse(by, correlation_id, None, vec![error], address.as_ref())
                    .await?;
                if let Err(err) = delivery.dead_letter(e.code(), &e.to_string()).await {
                    tracing::warn!(error = %err, "dead-lettering a malformed request failed");
                }
                return Ok(Vec::new());
            }
        };
        let job_id = request.job_id;
        let Some(user) = delivery.user_id.as_deref() else {
            let error = request_error(
                "user_id",
                "required",
                "the message has no user_id property; set it to your RabbitMQ user",
            );
            self.refuse(by, correlation_id, job_id, vec![error], address.as_ref())
                .await?;
            if let Err(e) = delivery.ack().await {
                tracing::warn!(error = %e, "acking a request failed; it will be redelivered");
            }
            return Ok(Vec::new());
        };
        let outcome = self
            .submit_request(&Principal::amqp(user), request, correlation_id.clone())
            .await?;
        let out = match outcome {
            RequestOutcome::Rejected { errors } => {
                if let Some(address) = address {
                    self.reply(&address, &RequestReply::rejected(job_id, errors))
                        .await;
                }
                Vec::new()
            }
            RequestOutcome::Accepted {
                job,
                awaiting_approval,
                replies,
            }
            | RequestOutcome::Existing {
                job,
                awaiting_approval,
                replies,
            } => {
                if let Some(address) = address {
                    let reply = RequestReply {
                        awaiting_approval,
                        ..RequestReply::new(ReplyStatus::Accepted, Some(job))
                    };
                    self.reply(&address, &reply).await;
                    if awaiting_approval {
                        self.producers.insert(job, address);
                    }
                }
                replies
            }
        };
        if let Err(e) = delivery.ack().await {
            tracing::warn!(error = %e, "acking a request failed; it will be redelivered");
        }
        Ok(out)
    }

    /// The one entry for requests from outside chat (AMQP producers, the HTTP API): schema
    /// validation, the gate, roles, policy and approval, publication, with `who` as the
    /// requester; records the outcome as a `request.accepted` / `request.rejected` event. A
    /// request whose `job_id` names a job `who` requested already is answered with that job
    /// (a retry never makes a second one); another requester's job id is refused.
    pub async fn submit_request(
        &mut self,
        who: &Principal,
        request: JobRequest,
        correlation_id: Option<String>,
    ) -> Result<RequestOutcome, EngineError> {
        let by = Some(who.id.clone());
        let job_id = request.job_id;
        if let Some(info) = job_id.and_then(|id| self.state.jobs.get(&id)) {
            if info.requester.as_ref() == Some(&who.id) {
                return Ok(RequestOutcome::Existing {
                    job: info.job_id,
                    awaiting_approval: info.phase == crate::state::Phase::AwaitingApproval,
                    replies: Vec::new(),
                });
            }
            let message = "a job with this job_id exists already";
            let errors = vec![request_error("job_id", "duplicate", message)];
            self.refuse(by, correlation_id, job_id, errors.clone(), None)
                .await?;
            return Ok(RequestOutcome::Rejected { errors });
        }
        match self.gate_request(who, request).await? {
            Err(errors) => {
                self.refuse(by, correlation_id, job_id, errors.clone(), None)
                    .await?;
                Ok(RequestOutcome::Rejected { errors })
            }
            Ok((job, awaiting_approval, replies)) => {
                let body = EventBody::RequestAccepted {
                    by: who.id.clone(),
                    correlation_id,
                    awaiting_approval,
                };
                self.emit(job, body).await?;
                Ok(RequestOutcome::Accepted {
                    job,
                    awaiting_approval,
                    replies,
                })
            }
        }
    }

    /// Validation, the gate, roles, then policy: the accepted job (and whether it waits for
    /// approval) with the replies for chat, or every problem found.
    async fn gate_request(
        &mut self,
        who: &Principal,
        mut request: JobRequest,
    ) -> Result<Result<(JobId, bool, Vec<Reply>), Vec<RequestError>>, EngineError> {
        let wire = |errors: Vec<FieldError>| errors.iter().map(RequestError::from).collect();
        match self.validate_request(&request) {
            Err(errors) => return Ok(Err(wire(errors))),
            Ok(Some(spec)) => request.spec = spec,
            Ok(None) => {}
        }
        let (kind, target) = (request.kind, request.target.clone());
        if let Err(errors) =
            crate::gate::check(&self.state, &self.forms, kind, &target, &request.spec)
        {
            return Ok(Err(wire(errors)));
        }
        let grants = match self.cfg.rbac.check_role(who, required_role_for_kind(kind)) {
            Ok(g) => g,
            Err(role) => {
                let message = format!("{} needs the {} role", kind.as_str(), role.as_str());
                return Ok(Err(vec![request_error("", "forbidden", message)]));
            }
        };
        let mut env = JobEnvelope::new(kind, target, request.spec, who.id.clone());
        if let Some(id) = request.job_id {
            env.job_id = id;
        }
        env.secrets = request.secrets;
        let job = env.job_id;
        let out = self.submit_envelope(who, &grants, env).await?;
        if super::opened(&out) != Some(job) {
            // Refused after the gate (secrets could not be sealed): the notice says why.
            let message = out
                .iter()
                .find_map(|r| match r {
                    Reply::Notice { message, .. } => Some(message.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "refused".into());
            return Ok(Err(vec![request_error("secrets", "refused", message)]));
        }
        let awaiting = out
            .iter()
            .any(|r| matches!(r, Reply::ApprovalRequested { .. }));
        Ok(Ok((job, awaiting, out)))
    }

    /// The spec against its kind's fields and, for kinds with a form, the form schema and
    /// inventory choices; the validated spec (defaults applied) when the form validated it.
    /// Secret fields sealed into `secrets` count as present.
    fn validate_request(
        &self,
        request: &JobRequest,
    ) -> Result<Option<Map<String, Value>>, Vec<FieldError>> {
        // The form's errors (each naming its field) come first; the typed spec's refusal
        // names no field, so it is the answer only when the form found nothing.
        let parsed = JobSpec::parse(request.kind, &request.spec)
            .map_err(|_| vec![crate::gate::spec_mismatch(request.kind)]);
        let Some(schema) =
            aetherv_core::schema::form_id_for(request.kind).and_then(|form| self.forms.get(form))
        else {
            return parsed.map(|_| None);
        };
        // Fields the kind takes besides its form (the VM a `vm.initialize` names, which the
        // guest form does not ask) are checked by `JobSpec::parse` above and kept as given.
        let kind_only: Map<String, Value> = request
            .spec
            .iter()
            .filter(|(k, _)| {
                schema.field(k).is_none()
                    && request
                        .kind
                        .fields()
                        .is_some_and(|f| f.iter().any(|f| f.name == k.as_str()))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let spec = Value::Object(
            request
                .spec
                .iter()
                .filter(|(k, _)| !kind_only.contains_key(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        let errors = match validate(schema, &spec, &self.validation_context()) {
            Ok(valid) => {
                parsed?;
                let mut values = valid.into_values();
                values.extend(kind_only);
                return Ok(Some(values));
            }
            Err(errors) => errors,
        };
        let secret = aetherv_core::ops::secret_fields();
        let errors: Vec<FieldError> = errors
            .into_iter()
            .filter(|e| {
                !(request.secrets.is_some()
                    && e.code == ErrorCode::Required
                    && secret.contains(&e.field.as_str()))
            })
            .collect();
        if errors.is_empty() {
            parsed.map(|_| None)
        } else {
            Err(errors)
        }
    }

    /// A refusal: the `request.rejected` event and the reply.
    async fn refuse(
        &mut self,
        by: Option<Requester>,
        correlation_id: Option<String>,
        job_id: Option<JobId>,
        errors: Vec<RequestError>,
        address: Option<&ReplyAddress>,
    ) -> Result<(), EngineError> {
        let body = EventBody::RequestRejected {
            by,
            correlation_id,
            errors: errors.clone(),
        };
        let ev = match job_id {
            Some(job) => aetherv_core::Event::for_job(job, 0, body),
            None => aetherv_core::Event::for_host(0, body),
        };
        self.broker.publish_event(&ev).await?;
        if let Some(address) = address {
            self.reply(address, &RequestReply::rejected(job_id, errors))
                .await;
        }
        Ok(())
    }

    /// Sends a reply; a producer that went away is logged, not an engine error.
    async fn reply(&self, address: &ReplyAddress, reply: &RequestReply) {
        let sent = self
            .broker
            .publish_reply(
                &address.reply_to,
                address.correlation_id.as_deref(),
                &reply.to_vec(),
            )
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, status = reply.status.as_str(), "replying to a producer failed");
        }
    }

    /// Tells the producer of `job` (if it waits for news) about an approval decision, from the
    /// event the engine just emitted.
    pub(super) async fn tell_producer(&mut self, job: JobId, body: &EventBody) {
        let (status, by, reason) = match body {
            EventBody::JobQueued { .. } => (ReplyStatus::Approved, None, None),
            EventBody::ApprovalRejected { by, reason } => (
                ReplyStatus::ApprovalRejected,
                Some(by.clone()),
                reason.clone(),
            ),
            EventBody::ApprovalExpired {} => (ReplyStatus::ApprovalExpired, None, None),
            EventBody::JobCancelled { by } => (ReplyStatus::ApprovalRejected, by.clone(), None),
            _ => return,
        };
        let Some(address) = self.producers.remove(&job) else {
            return;
        };
        let reply = RequestReply {
            by,
            reason,
            ..RequestReply::new(status, Some(job))
        };
        self.reply(&address, &reply).await;
    }
}
