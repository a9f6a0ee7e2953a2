//! Message rendering: every user-visible text comes from a handlebars template in
//! `templates/<platform>/`, through one named builder function per message.
//!
//! The registry is built once from embedded templates, in strict mode (a missing value is an
//! error, never an empty string) and without HTML escaping (chat text is not HTML). Rendering
//! never fails towards the user: a template error is logged and a plain fallback is returned.
//! This module must not decide anything; it only turns view models into text.

use handlebars::Handlebars;
use serde::Serialize;
use serde_json::{json, Value};

/// The console templates, by name.
pub const CONSOLE_TEMPLATES: &[(&str, &str)] = &[
    ("help", include_str!("../../templates/console/help.hbs")),
    (
        "refused",
        include_str!("../../templates/console/refused.hbs"),
    ),
    (
        "parse_error",
        include_str!("../../templates/console/parse_error.hbs"),
    ),
    (
        "form_errors",
        include_str!("../../templates/console/form_errors.hbs"),
    ),
    (
        "approval_request",
        include_str!("../../templates/console/approval_request.hbs"),
    ),
    (
        "vote_counted",
        include_str!("../../templates/console/vote_counted.hbs"),
    ),
    (
        "approved",
        include_str!("../../templates/console/approved.hbs"),
    ),
    (
        "rejected",
        include_str!("../../templates/console/rejected.hbs"),
    ),
    (
        "expired",
        include_str!("../../templates/console/expired.hbs"),
    ),
    (
        "vote_refused",
        include_str!("../../templates/console/vote_refused.hbs"),
    ),
    (
        "job_status",
        include_str!("../../templates/console/job_status.hbs"),
    ),
    (
        "job_log",
        include_str!("../../templates/console/job_log.hbs"),
    ),
    (
        "job_succeeded",
        include_str!("../../templates/console/job_succeeded.hbs"),
    ),
    (
        "job_failed",
        include_str!("../../templates/console/job_failed.hbs"),
    ),
    (
        "job_cancelled",
        include_str!("../../templates/console/job_cancelled.hbs"),
    ),
    (
        "vm_list",
        include_str!("../../templates/console/vm_list.hbs"),
    ),
    (
        "vm_show",
        include_str!("../../templates/console/vm_show.hbs"),
    ),
    ("hosts", include_str!("../../templates/console/hosts.hbs")),
    ("jobs", include_str!("../../templates/console/jobs.hbs")),
    ("notice", include_str!("../../templates/console/notice.hbs")),
    (
        "attachment",
        include_str!("../../templates/console/attachment.hbs"),
    ),
];

/// Why the template set is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A template does not compile.
    #[error("template {name} does not compile")]
    Template {
        /// Template name.
        name: String,
        /// The parser's error.
        #[source]
        source: Box<handlebars::TemplateError>,
    },
}

/// The compiled templates of one platform.
#[derive(Debug)]
pub struct Renderer {
    hb: Handlebars<'static>,
}

/// One VM row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmRow {
    /// Host.
    pub host: String,
    /// VM name.
    pub name: String,
    /// Hyper-V id.
    pub id: String,
    /// Power state.
    pub state: String,
    /// Virtual processors.
    pub cpu: u64,
    /// Memory in GB.
    pub memory_gb: u64,
}

/// One host row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostRow {
    /// Host name.
    pub name: String,
    /// `up`, `unreachable`, or `not polled yet`.
    pub status: String,
    /// VM count.
    pub vms: usize,
    /// Short id of the running job.
    pub running: Option<String>,
    /// Jobs waiting.
    pub queued: usize,
}

/// One job row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    /// Short job id.
    pub short: String,
    /// Job kind.
    pub kind: String,
    /// Host or cluster.
    pub target: String,
    /// State word.
    pub state: String,
    /// Who asked.
    pub requester: String,
}

/// The status message of a job thread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    /// Short job id.
    pub short: String,
    /// Job kind.
    pub kind: String,
    /// Host or cluster.
    pub target: String,
    /// State word.
    pub state: String,
    /// Current step.
    pub step: Option<StepView>,
    /// Position in the host queue (1 = next).
    pub queue_position: Option<usize>,
    /// Finished steps / total, 0–100.
    pub percent: u32,
}

/// A step in progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    /// 1-based index.
    pub index: u32,
    /// Step count.
    pub total: u32,
    /// Step name.
    pub name: String,
}

/// The approval request message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalView {
    /// Short job id.
    pub short: String,
    /// Policy rule name.
    pub rule: String,
    /// Approvals needed.
    pub required: u32,
    /// Groups, comma-joined.
    pub groups: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
    /// Requester.
    pub requester: String,
    /// Job kind.
    pub kind: String,
    /// Target.
    pub target: String,
    /// The request fields, secrets already redacted.
    pub fields: serde_json::Map<String, Value>,
}

/// Width of the progress bar in characters.
pub const PROGRESS_BAR_WIDTH: usize = 20;

fn bar(percent: u32) -> String {
    let filled = (percent.min(100) as usize * PROGRESS_BAR_WIDTH) / 100;
    format!(
        "{}{}",
        "#".repeat(filled),
        "-".repeat(PROGRESS_BAR_WIDTH - filled)
    )
}

impl Renderer {
    /// The console template set.
    pub fn console() -> Result<Self, RenderError> {
        Self::from_templates(CONSOLE_TEMPLATES)
    }

    /// Compiles a template set (strict, no escaping).
    pub fn from_templates(templates: &[(&str, &str)]) -> Result<Self, RenderError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        for (name, text) in templates {
            hb.register_template_string(name, *text)
                .map_err(|e| RenderError::Template {
                    name: (*name).to_string(),
                    source: Box::new(e),
                })?;
        }
        Ok(Renderer { hb })
    }

    fn render(&self, name: &str, data: &Value) -> String {
        match self.hb.render(name, data) {
            Ok(s) => s.trim_end().to_string(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "template failed");
                format!("[{name}] {data}")
            }
        }
    }

    /// `help`: the commands the caller may run.
    pub fn help(&self, user: &str, commands: &[&str]) -> String {
        self.render("help", &json!({"user": user, "commands": commands}))
    }

    /// A command refused for lack of a role.
    pub fn refused(&self, user: &str, command: &str, role: &str) -> String {
        self.render(
            "refused",
            &json!({"user": user, "command": command, "role": role}),
        )
    }

    /// A line that is not a command.
    pub fn parse_error(&self, user: &str, message: &str, usage: Option<&str>) -> String {
        self.render(
            "parse_error",
            &json!({"user": user, "message": message, "usage": usage}),
        )
    }

    /// Validation errors, each next to its field.
    pub fn form_errors(&self, user: &str, form: &str, errors: &[(String, String)]) -> String {
        let errors: Vec<Value> = errors
            .iter()
            .map(|(f, m)| json!({"field": f, "message": m}))
            .collect();
        self.render(
            "form_errors",
            &json!({"user": user, "form": form, "errors": errors}),
        )
    }

    /// The approval request (the whole request, secrets redacted by the caller).
    pub fn approval_request(&self, v: &ApprovalView) -> String {
        self.render("approval_request", &json!(v))
    }

    /// A vote was counted.
    pub fn vote_counted(&self, voter: &str, short: &str, granted: u32, required: u32) -> String {
        self.render(
            "vote_counted",
            &json!({"voter": voter, "short": short, "granted": granted, "required": required}),
        )
    }

    /// The request is approved and the job published.
    pub fn approved(&self, short: &str, approvers: &[String], target: &str) -> String {
        self.render(
            "approved",
            &json!({"short": short, "approvers": approvers.join(", "), "target": target}),
        )
    }

    /// The request was vetoed.
    pub fn rejected(&self, short: &str, voter: &str, reason: Option<&str>) -> String {
        self.render(
            "rejected",
            &json!({"short": short, "voter": voter, "reason": reason}),
        )
    }

    /// The request expired.
    pub fn expired(&self, short: &str) -> String {
        self.render("expired", &json!({"short": short}))
    }

    /// A vote was refused.
    pub fn vote_refused(&self, user: &str, message: &str) -> String {
        self.render("vote_refused", &json!({"user": user, "message": message}))
    }

    /// The status message of a job thread.
    pub fn job_status(&self, v: &StatusView) -> String {
        let mut data = json!(v);
        data["bar"] = json!(bar(v.percent));
        self.render("job_status", &data)
    }

    /// One live log message.
    pub fn job_log(&self, part: usize, lines: &[String]) -> String {
        self.render("job_log", &json!({"part": part, "lines": lines}))
    }

    /// The final message of a job that succeeded.
    pub fn job_succeeded(
        &self,
        short: &str,
        kind: &str,
        target: &str,
        resources: &serde_json::Map<String, Value>,
    ) -> String {
        self.render(
            "job_succeeded",
            &json!({"short": short, "kind": kind, "target": target, "resources": resources}),
        )
    }

    /// The final message of a job that failed.
    pub fn job_failed(&self, short: &str, step: Option<&str>, code: &str, message: &str) -> String {
        self.render(
            "job_failed",
            &json!({"short": short, "step": step, "code": code, "message": message}),
        )
    }

    /// The final message of a cancelled job.
    pub fn job_cancelled(&self, short: &str, by: Option<&str>) -> String {
        self.render("job_cancelled", &json!({"short": short, "by": by}))
    }

    /// `vm list`.
    pub fn vm_list(&self, host: Option<&str>, vms: &[VmRow]) -> String {
        self.render("vm_list", &json!({"host": host, "vms": vms}))
    }

    /// `vm show`.
    pub fn vm_show(&self, vm: &VmRow) -> String {
        self.render("vm_show", &json!(vm))
    }

    /// `hosts`.
    pub fn hosts(&self, hosts: &[HostRow]) -> String {
        self.render("hosts", &json!({"hosts": hosts}))
    }

    /// `jobs` and `job`.
    pub fn jobs(&self, jobs: &[JobRow]) -> String {
        self.render("jobs", &json!({"jobs": jobs}))
    }

    /// A one-line answer to a user.
    pub fn notice(&self, user: &str, message: &str) -> String {
        self.render("notice", &json!({"user": user, "message": message}))
    }

    /// The note that goes with the full-log attachment.
    pub fn attachment(&self, short: &str, name: &str, lines: usize) -> String {
        self.render(
            "attachment",
            &json!({"short": short, "name": name, "lines": lines}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Renderer {
        Renderer::console().expect("templates compile")
    }

    fn vm() -> VmRow {
        VmRow {
            host: "hv01".into(),
            name: "web01".into(),
            id: "5f1c".into(),
            state: "Running".into(),
            cpu: 2,
            memory_gb: 4,
        }
    }

    #[test]
    fn help_and_refusals() {
        let r = r();
        insta::assert_snapshot!("help", r.help("alice", &["vm list [--host H]", "help"]));
        insta::assert_snapshot!("refused", r.refused("bob", "deploy", "operator"));
        insta::assert_snapshot!(
            "parse_error",
            r.parse_error("bob", "missing NAME", Some("vm show NAME"))
        );
        insta::assert_snapshot!(
            "parse_error_no_usage",
            r.parse_error("bob", "unknown command: frob", None)
        );
        insta::assert_snapshot!(
            "form_errors",
            r.form_errors(
                "alice",
                "vm",
                &[
                    ("cpu_cores".into(), "must be between 1 and 64".into()),
                    ("target_host".into(), "choose one of hv01, hv02".into())
                ]
            )
        );
        insta::assert_snapshot!("notice", r.notice("alice", "no such job"));
    }

    #[test]
    fn approvals() {
        let r = r();
        let fields =
            serde_json::from_value(json!({"vm_name": "web01", "admin_password": "••••••"}))
                .unwrap_or_default();
        insta::assert_snapshot!(
            "approval_request",
            r.approval_request(&ApprovalView {
                short: "1a2b3c4d".into(),
                rule: "everything".into(),
                required: 2,
                groups: "approvers".into(),
                expires_at: "2026-01-01T00:00:00Z".into(),
                requester: "alice".into(),
                kind: "vm.create".into(),
                target: "hv01".into(),
                fields,
            })
        );
        insta::assert_snapshot!("vote_counted", r.vote_counted("bob", "1a2b3c4d", 1, 2));
        insta::assert_snapshot!(
            "approved",
            r.approved("1a2b3c4d", &["bob".into(), "carol".into()], "hv01")
        );
        insta::assert_snapshot!("rejected", r.rejected("1a2b3c4d", "carol", Some("too big")));
        insta::assert_snapshot!("rejected_no_reason", r.rejected("1a2b3c4d", "carol", None));
        insta::assert_snapshot!("expired", r.expired("1a2b3c4d"));
        insta::assert_snapshot!(
            "vote_refused",
            r.vote_refused("alice", "you cannot approve your own request")
        );
    }

    #[test]
    fn job_thread_messages() {
        let r = r();
        insta::assert_snapshot!(
            "job_status_queued",
            r.job_status(&StatusView {
                short: "1a2b3c4d".into(),
                kind: "vm.create".into(),
                target: "hv01".into(),
                state: "queued".into(),
                step: None,
                queue_position: Some(2),
                percent: 0,
            })
        );
        insta::assert_snapshot!(
            "job_status_running",
            r.job_status(&StatusView {
                short: "1a2b3c4d".into(),
                kind: "deployment.managed".into(),
                target: "hv01".into(),
                state: "running".into(),
                step: Some(StepView {
                    index: 2,
                    total: 4,
                    name: "disk.create".into()
                }),
                queue_position: None,
                percent: 25,
            })
        );
        insta::assert_snapshot!(
            "job_log",
            r.job_log(3, &["Creating VM web01".into(), "done".into()])
        );
        let res = serde_json::from_value(json!({"vm_id": "5f1c", "vm_name": "web01"}))
            .unwrap_or_default();
        insta::assert_snapshot!(
            "job_succeeded",
            r.job_succeeded("1a2b3c4d", "vm.create", "hv01", &res)
        );
        insta::assert_snapshot!(
            "job_failed",
            r.job_failed("1a2b3c4d", Some("vm.create"), "name_conflict", "exists")
        );
        insta::assert_snapshot!("job_cancelled", r.job_cancelled("1a2b3c4d", Some("alice")));
        insta::assert_snapshot!(
            "attachment",
            r.attachment("1a2b3c4d", "job-1a2b3c4d.log", 10)
        );
    }

    #[test]
    fn inventory_views() {
        let r = r();
        insta::assert_snapshot!("vm_list", r.vm_list(None, &[vm()]));
        insta::assert_snapshot!("vm_list_empty", r.vm_list(Some("hv02"), &[]));
        insta::assert_snapshot!("vm_show", r.vm_show(&vm()));
        insta::assert_snapshot!(
            "hosts",
            r.hosts(&[
                HostRow {
                    name: "hv01".into(),
                    status: "up".into(),
                    vms: 1,
                    running: Some("1a2b3c4d".into()),
                    queued: 2
                },
                HostRow {
                    name: "hv02".into(),
                    status: "unreachable".into(),
                    vms: 0,
                    running: None,
                    queued: 0
                }
            ])
        );
        insta::assert_snapshot!("hosts_empty", r.hosts(&[]));
        insta::assert_snapshot!(
            "jobs",
            r.jobs(&[JobRow {
                short: "1a2b3c4d".into(),
                kind: "vm.create".into(),
                target: "hv01".into(),
                state: "succeeded".into(),
                requester: "alice".into()
            }])
        );
        insta::assert_snapshot!("jobs_empty", r.jobs(&[]));
    }

    #[test]
    fn every_template_compiles_strict() {
        assert_eq!(CONSOLE_TEMPLATES.len(), 21);
        assert!(r().hb.get_templates().len() == CONSOLE_TEMPLATES.len());
    }
}
