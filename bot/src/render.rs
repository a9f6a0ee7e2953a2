//! Templates: every text a person reads comes from a handlebars template in
//! `templates/<platform>/`, one file per name. The built-in set is embedded; a directory given at
//! run time (`templates_dir` in the configuration, or `AETHERV_TEMPLATES`) overrides any file
//! of it without a rebuild: `<dir>/<platform>/<name>.hbs`.
//!
//! Sets compile in strict mode (a missing value is an error, never an empty string) and without
//! HTML escaping (chat text is not HTML). [`TemplateSet::check`] renders sample data through
//! every template at start, so a broken override is a clear error naming its file, not a
//! surprise in a job thread. At run time rendering never fails towards the user: an error is
//! logged and a plain fallback returned. This module decides nothing; it turns view models
//! into text.

use crate::reply::Reply;
use handlebars::Handlebars;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The embedded templates of `templates/<dir>/`, by name: `builtin_templates!("console": help,
/// notice)`. Paths are relative to the invoking crate's manifest (crates sit beside
/// `templates/`).
#[macro_export]
macro_rules! builtin_templates {
    ($dir:literal: $($name:ident),* $(,)?) => {
        &[$((
            stringify!($name),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"), "/../templates/", $dir, "/", stringify!($name), ".hbs"
            )),
        )),*]
    };
}

/// The console templates, by name.
pub const CONSOLE_TEMPLATES: &[(&str, &str)] = builtin_templates!("console":
    help, refused, parse_error, form_errors, approval_request, vote_counted, approved, rejected,
    expired, vote_refused, job_status, job_log, job_succeeded, job_failed, job_cancelled,
    vm_list, vm_show, hosts, jobs, notice, attachment, guided_intro, guided_field, guided_set,
    guided_required, guided_cancelled,
);

/// The environment variable naming the template override directory.
pub const TEMPLATES_ENV: &str = "AETHERV_TEMPLATES";

/// Why a template set is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// An override file cannot be read.
    #[error("template {file}: cannot read it: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A template does not compile.
    #[error("template {file} does not compile: {reason}")]
    Compile {
        /// The file (or `built-in <platform>/<name>.hbs`).
        file: String,
        /// The parser's error.
        reason: String,
    },
    /// A template does not render (a missing value, a bad helper call, output the platform
    /// cannot take).
    #[error("template {file} does not render: {reason}")]
    Render {
        /// The file (or `built-in <platform>/<name>.hbs`).
        file: String,
        /// What went wrong.
        reason: String,
    },
}

/// One platform's compiled templates, built-in or overridden file by file.
#[derive(Debug)]
pub struct TemplateSet {
    hb: Handlebars<'static>,
    origins: HashMap<String, String>,
}

impl TemplateSet {
    /// Compiles `builtin` (strict, no escaping), each replaced by `<dir>/<platform>/<name>.hbs`
    /// when that file exists. `setup` registers helpers first.
    pub fn load(
        platform: &str,
        builtin: &[(&str, &str)],
        dir: Option<&Path>,
        setup: impl FnOnce(&mut Handlebars<'static>),
    ) -> Result<Self, TemplateError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        setup(&mut hb);
        let mut origins = HashMap::new();
        for (name, text) in builtin {
            let file = dir.map(|d| d.join(platform).join(format!("{name}.hbs")));
            let (origin, text) = match file.filter(|f| f.is_file()) {
                Some(f) => {
                    let t = std::fs::read_to_string(&f).map_err(|source| TemplateError::Read {
                        file: f.clone(),
                        source,
                    })?;
                    (f.display().to_string(), t)
                }
                None => (
                    format!("built-in {platform}/{name}.hbs"),
                    (*text).to_string(),
                ),
            };
            hb.register_template_string(name, &text)
                .map_err(|e| TemplateError::Compile {
                    file: origin.clone(),
                    reason: e.to_string(),
                })?;
            if !origin.starts_with("built-in") {
                tracing::info!(template = %origin, "template overridden");
            }
            origins.insert((*name).to_string(), origin);
        }
        Ok(TemplateSet { hb, origins })
    }

    /// Where template `name` came from (a file path, or `built-in <platform>/<name>.hbs`).
    pub fn origin(&self, name: &str) -> &str {
        self.origins
            .get(name)
            .map_or("unknown template", String::as_str)
    }

    /// How many templates the set holds.
    pub fn len(&self) -> usize {
        self.hb.get_templates().len()
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Renders `name`, or says which file failed and why.
    pub fn try_render(&self, name: &str, data: &Value) -> Result<String, TemplateError> {
        self.hb
            .render(name, data)
            .map_err(|e| TemplateError::Render {
                file: self.origin(name).to_string(),
                reason: e.to_string(),
            })
    }
}

/// The text templates of one platform: every reply kind's text.
#[derive(Debug)]
pub struct Renderer {
    set: TemplateSet,
}

impl Renderer {
    /// The built-in console templates.
    pub fn console() -> Result<Self, TemplateError> {
        Self::load("console", CONSOLE_TEMPLATES, None)
    }

    /// `builtin` with the overrides from `dir/<platform>/`, checked against a sample of every
    /// reply.
    pub fn load(
        platform: &str,
        builtin: &[(&str, &str)],
        dir: Option<&Path>,
    ) -> Result<Self, TemplateError> {
        let r = Renderer {
            set: TemplateSet::load(platform, builtin, dir, |_| {})?,
        };
        r.check()?;
        Ok(r)
    }

    /// Renders a sample of every reply through its templates.
    fn check(&self) -> Result<(), TemplateError> {
        for reply in Reply::samples() {
            for (name, data) in texts_of(&reply) {
                self.set.try_render(name, &data)?;
            }
        }
        Ok(())
    }

    /// Renders template `name` (trailing white space trimmed). A failure is logged and a plain
    /// fallback returned: the user always gets something.
    pub fn render(&self, name: &str, data: &Value) -> String {
        match self.set.try_render(name, data) {
            Ok(s) => s.trim_end().to_string(),
            Err(e) => {
                tracing::error!(error = %e, "template failed");
                format!("[{name}] {data}")
            }
        }
    }

    /// The text of a reply (`None` for replies without one of their own).
    pub fn text(&self, reply: &Reply) -> Option<String> {
        reply
            .text_view()
            .map(|(name, data)| self.render(name, &data))
    }

    /// The templates.
    pub fn templates(&self) -> &TemplateSet {
        &self.set
    }
}

/// Every text template a reply is rendered with, and its data.
fn texts_of(reply: &Reply) -> Vec<(&'static str, Value)> {
    let mut out: Vec<(&'static str, Value)> = reply.text_view().into_iter().collect();
    out.extend(reply.attachment_view());
    if let Reply::ThreadUpdate(t) = reply {
        out.push(t.content.text_view());
    }
    out
}

#[cfg(test)]
mod tests;
