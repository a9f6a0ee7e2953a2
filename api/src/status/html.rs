//! The status page as server-rendered HTML: the whole page, the fragment the page's script
//! fetches to refresh hosts, approvals and jobs, and the sign-in form. Every value goes
//! through [`esc`] (VM names, requesters and log lines are user input); the markup has no
//! inline script or style, so the page's Content-Security-Policy can forbid both.

use super::view::{ApprovalLine, HostView, JobLine, JobRef, StatusView};
use std::fmt::Write as _;

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/status/static/status.css\">\n</head>\n",
        esc(title)
    )
}

/// The whole page.
pub fn page(v: &StatusView) -> String {
    let mut out = head("Aether-V status");
    let _ = write!(
        out,
        "<body>\n<header><h1>Aether-V status</h1><span class=\"who\">signed in as <b id=\"user\">{}</b></span>\
         <form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form></header>\n\
         <main id=\"status\" data-refresh=\"/status/fragment\">\n<div id=\"live\">\n",
        esc(&v.user)
    );
    out.push_str(&fragment(v));
    out.push_str("</div>\n<section id=\"logs\"><h2>Live logs</h2>\n");
    for j in &v.jobs {
        out.push_str(&log_pane(j));
    }
    out.push_str(
        "</section>\n</main>\n<script src=\"/status/static/status.js\"></script>\n</body>\n</html>\n",
    );
    out
}

/// Hosts, approvals and the job table: what the page's script replaces every few seconds.
pub fn fragment(v: &StatusView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<p class=\"generated\">as of <time id=\"generated\">{}</time></p>",
        esc(&v.generated_at)
    );
    out.push_str("<section id=\"hosts\"><h2>Hosts</h2>\n");
    if v.hosts.is_empty() {
        out.push_str("<p class=\"empty\">No hosts known yet.</p>\n");
    }
    for h in &v.hosts {
        out.push_str(&host(h));
    }
    out.push_str("</section>\n<section id=\"approvals\"><h2>Pending approvals</h2>\n");
    if v.approvals.is_empty() {
        out.push_str("<p class=\"empty\">Nothing waits for a vote.</p>\n");
    } else {
        out.push_str(
            "<table><thead><tr><th>Job</th><th>Request</th><th>Rule</th><th>Approved by</th>\
             <th>Still needed</th><th>Expires</th></tr></thead><tbody>\n",
        );
        for a in &v.approvals {
            out.push_str(&approval(a));
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n<section id=\"jobs\"><h2>Recent jobs</h2>\n");
    if v.jobs.is_empty() {
        out.push_str("<p class=\"empty\">No jobs yet.</p>\n");
    } else {
        out.push_str(
            "<table><thead><tr><th>Job</th><th>Kind</th><th>Target</th><th>State</th>\
             <th>Requested by</th><th>Requested</th></tr></thead><tbody>\n",
        );
        for j in &v.jobs {
            let _ = writeln!(
                out,
                "<tr class=\"job-row\" data-job=\"{id}\" data-state=\"{state}\" data-live=\"{live}\" \
                 data-log-after=\"{after}\"><td><code>{short}</code></td><td>{kind}</td><td>{target}</td>\
                 <td><span class=\"state state-{state}\">{state_text}</span>{step}</td><td>{who}</td><td>{created}</td></tr>",
                id = esc(&j.job.id),
                state = esc(&j.state),
                state_text = esc(&j.state.replace('_', " ")),
                live = j.live,
                after = j.log_after,
                short = esc(&j.job.short),
                kind = esc(&j.job.kind),
                target = esc(&j.target),
                step = j
                    .job
                    .step
                    .as_deref()
                    .map(|s| format!(" <span class=\"step\">{}</span>", esc(s)))
                    .unwrap_or_default(),
                who = esc(&j.job.requester),
                created = esc(j.created_at.as_deref().unwrap_or("")),
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");
    out
}

fn job_ref(j: &JobRef) -> String {
    format!(
        "<code>{}</code> {} <span class=\"by\">by {}</span>{}",
        esc(&j.short),
        esc(&j.kind),
        esc(&j.requester),
        j.step
            .as_deref()
            .map(|s| format!(" <span class=\"step\">{}</span>", esc(s)))
            .unwrap_or_default()
    )
}

fn host(h: &HostView) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<article class=\"host\" data-host=\"{name}\">\n<h3>{name} <span class=\"state state-{state}\">{state_text}</span></h3>\n",
        name = esc(&h.name),
        state = esc(&h.state),
        state_text = esc(&h.state.replace('_', " ")),
    );
    if let Some(e) = &h.error {
        let _ = writeln!(out, "<p class=\"error\">{}</p>", esc(e));
    }
    let memory = match (h.free_memory_gb, h.total_memory_gb) {
        (Some(free), Some(total)) => format!("{free} GB free of {total} GB"),
        (Some(free), None) => format!("{free} GB free"),
        _ => "not reported".to_string(),
    };
    let _ = writeln!(
        out,
        "<p class=\"memory\">Memory: <span class=\"free-memory\">{}</span></p>",
        esc(&memory)
    );
    out.push_str("<div class=\"slot\"><h4>Slot</h4>\n");
    match &h.running {
        Some(j) => {
            let _ = writeln!(
                out,
                "<p class=\"running-job\" data-job=\"{}\">running {}</p>",
                esc(&j.id),
                job_ref(j)
            );
        }
        None => out.push_str("<p class=\"idle\">idle</p>\n"),
    }
    if !h.queue.is_empty() {
        out.push_str("<ol class=\"queue\">\n");
        for q in &h.queue {
            let _ = writeln!(
                out,
                "<li class=\"queued-job\" data-job=\"{}\" data-position=\"{}\">\
                 <span class=\"position\">queued #{}</span> {}</li>",
                esc(&q.job.id),
                q.position,
                q.position,
                job_ref(&q.job)
            );
        }
        out.push_str("</ol>\n");
    }
    out.push_str("</div>\n");
    let _ = writeln!(
        out,
        "<details class=\"vms\" open><summary>{} VM{}</summary><ul>",
        h.vms.len(),
        if h.vms.len() == 1 { "" } else { "s" }
    );
    for vm in &h.vms {
        let _ = writeln!(
            out,
            "<li class=\"vm\"><span class=\"vm-name\">{}</span> <span class=\"vm-state\">{}</span> \
             <span class=\"vm-memory\">{} GB</span></li>",
            esc(&vm.name),
            esc(&vm.state),
            vm.memory_gb
        );
    }
    out.push_str("</ul></details>\n</article>\n");
    out
}

fn approval(a: &ApprovalLine) -> String {
    let approved = if a.approved_by.is_empty() {
        "nobody yet".to_string()
    } else {
        a.approved_by
            .iter()
            .map(|s| esc(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let groups = if a.groups.is_empty() {
        "any approver".to_string()
    } else {
        a.groups
            .iter()
            .map(|s| esc(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "<tr class=\"approval\" data-job=\"{id}\"><td><code>{short}</code></td><td>{kind} on {target} \
         <span class=\"by\">by {who}</span></td><td>{rule}</td><td>{approved}</td>\
         <td class=\"missing\">{missing} of {required} from {groups}</td><td>{expires}</td></tr>\n",
        id = esc(&a.job.id),
        short = esc(&a.job.short),
        kind = esc(&a.job.kind),
        target = esc(&a.target),
        who = esc(&a.job.requester),
        rule = esc(&a.rule),
        missing = a.missing,
        required = a.required,
        expires = esc(&a.expires_at),
    )
}

fn log_pane(j: &JobLine) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<article class=\"log-pane\" data-job=\"{id}\" data-live=\"{live}\" data-log-after=\"{after}\">\
         <h3><code>{short}</code> {kind} on {target}</h3>\n<pre class=\"log\">",
        id = esc(&j.job.id),
        live = j.live,
        after = j.log_after,
        short = esc(&j.job.short),
        kind = esc(&j.job.kind),
        target = esc(&j.target),
    );
    for line in &j.log {
        out.push_str(&esc(line));
        out.push('\n');
    }
    out.push_str("</pre>\n</article>\n");
    out
}

/// The sign-in form: a token (an API bearer token or an OIDC access token), and a link to the
/// identity provider when an OIDC login is configured.
pub fn login(error: Option<&str>, oidc_login: bool) -> String {
    let mut out = head("Sign in · Aether-V status");
    out.push_str("<body class=\"login\">\n<main>\n<h1>Aether-V status</h1>\n");
    if let Some(e) = error {
        let _ = writeln!(out, "<p class=\"error\" id=\"login-error\">{}</p>", esc(e));
    }
    out.push_str(
        "<form method=\"post\" action=\"/login\">\n<label for=\"token\">API token</label>\n\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required>\n\
         <button type=\"submit\" id=\"sign-in\">Sign in</button>\n</form>\n",
    );
    if oidc_login {
        out.push_str("<p><a href=\"/login/oidc\" id=\"oidc-login\">Sign in with your identity provider</a></p>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}
