//! `aetherv.yaml`: one configuration file for every command, with sections `broker`, `log`,
//! `health`, `templates_dir`, `bot`, `slack`, `discord` and `worker`; and
//! `aetherv config check FILE`, which reports every problem of one at once.
//!
//! Precedence: command-line flags, then environment variables (`AETHERV_<SECTION>_<KEY>` for
//! any key of a section, plus the long-standing `AETHERV_AMQP_URL`, `AETHERV_PREFIX`,
//! `AETHERV_LOG`, `AETHERV_LOG_FORMAT`, `AETHERV_HEALTH_LISTEN`, …), then the file. Secrets are
//! never in the file: it names the environment variables or files that hold them.
//!
//! The per-command files of earlier versions (a worker's, Slack's, Discord's) still load: a
//! file is an `aetherv.yaml` when its top level holds only the keys above.
pub mod check;
pub mod schema;
pub mod tree;

use schema::{Key, Ty};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `aetherv config …`.
#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Report every problem of an `aetherv.yaml` with its line and path; exit 1 on any.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Runs `aetherv config …`.
pub fn run(c: ConfigCommand) -> ExitCode {
    let ConfigCommand::Check { file } = c;
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => return crate::cmd::fail("config check", 1, format!("{}: {e}", file.display())),
    };
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let env = |k: &str| std::env::var(k).ok();
    let problems = check::check(
        &text,
        &check::Ctx {
            base: &base,
            env: &env,
        },
    );
    for p in &problems {
        let at = if p.line == 0 {
            String::new()
        } else {
            format!("{}:", p.line)
        };
        let path = if p.path.is_empty() {
            String::new()
        } else {
            format!(" {}:", p.path)
        };
        println!("{}:{at}{path} {}", file.display(), p.message);
    }
    if problems.is_empty() {
        println!("{}: ok", file.display());
        ExitCode::SUCCESS
    } else {
        println!("{} problem(s)", problems.len());
        ExitCode::from(1)
    }
}

/// A loaded `aetherv.yaml`: the whole file as JSON, environment overrides applied and relative
/// paths resolved against the file's folder.
pub struct Unified {
    doc: Map<String, Value>,
}

impl Unified {
    /// Loads `path` when it is an `aetherv.yaml`; `Ok(None)` for a per-command file.
    pub fn load(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Unified>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let Ok(tree) = tree::parse(&text) else {
            return Ok(None); // the per-command loader says what is wrong
        };
        let Value::Object(mut doc) = tree.value.to_json() else {
            return Ok(None);
        };
        let known = |k: &String| schema::TOP.iter().any(|t| t.name == k);
        if doc.is_empty()
            || !doc.keys().all(known)
            || !doc.keys().any(|k| schema::SECTIONS.contains(&k.as_str()))
        {
            return Ok(None);
        }
        let base = path.parent().unwrap_or(Path::new("."));
        resolve_paths(&mut doc, schema::TOP, base);
        apply_env(&mut doc, env);
        Ok(Some(Unified { doc }))
    }

    /// One section (empty when absent).
    pub fn section(&self, name: &str) -> Map<String, Value> {
        match self.doc.get(name) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    }

    fn str_of(&self, section: &str, key: &str) -> Option<String> {
        self.doc
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    }

    /// The broker URL: the variable `broker.url_env` names (`AETHERV_AMQP_URL` by default), or
    /// the file `broker.url_file`; one URL or several comma-separated (a cluster's nodes).
    /// With `broker.addresses` (`host:port` of each node), the URL gives the scheme, the
    /// credentials and the vhost, and the result lists one URL per address.
    pub fn broker_url(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, String> {
        let url = if let Some(file) = self.str_of("broker", "url_file") {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("broker.url_file {file}: {e}"))?;
            Some(text.trim().to_string())
        } else {
            let var = self
                .str_of("broker", "url_env")
                .unwrap_or_else(|| "AETHERV_AMQP_URL".into());
            env(&var).filter(|v| !v.trim().is_empty())
        };
        let addresses: Vec<String> = match self.doc.get("broker").and_then(|b| b.get("addresses")) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(|s| s.trim().to_string()))
                .filter(|s| !s.is_empty())
                .collect(),
            _ => Vec::new(),
        };
        match url {
            Some(url) if !addresses.is_empty() => with_addresses(&url, &addresses).map(Some),
            url => Ok(url),
        }
    }

    /// The worker's configuration: the `worker` section with the broker's URL and prefix.
    pub fn worker_json(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Value, String> {
        let mut w = self.section("worker");
        if let Some(url) = self.broker_url(env)? {
            w.insert("amqp_url".into(), Value::String(url));
        }
        if let Some(p) = self.str_of("broker", "prefix") {
            w.insert("prefix".into(), Value::String(p));
        }
        Ok(Value::Object(w))
    }

    /// A chat platform's configuration (`slack` or `discord`) as the per-command format: its
    /// section with `bot.roles`, `bot.policy`, `bot.hosts` and `templates_dir`.
    pub fn chat_json(&self, platform: &str) -> Value {
        let mut c = self.section(platform);
        let bot = self.section("bot");
        for k in ["roles", "policy", "hosts"] {
            if let Some(v) = bot.get(k) {
                c.insert(k.into(), v.clone());
            }
        }
        if let Some(t) = self.doc.get("templates_dir") {
            c.insert("templates_dir".into(), t.clone());
        }
        Value::Object(c)
    }

    /// Process-wide settings the file gives, as the environment variables the commands read
    /// (only those not already set: the environment wins over the file).
    pub fn process_env(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let mut put = |var: &str, v: Option<String>| {
            if let Some(v) = v {
                if env(var).is_none() {
                    out.push((var.to_string(), v));
                }
            }
        };
        put("AETHERV_AMQP_URL", self.broker_url(env)?);
        put(
            "AETHERV_AMQP_ADDRESSES",
            match self.doc.get("broker").and_then(|b| b.get("addresses")) {
                Some(Value::Array(a)) if !a.is_empty() => Some(
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                _ => None,
            },
        );
        put("AETHERV_PREFIX", self.str_of("broker", "prefix"));
        put("AETHERV_LOG", self.str_of("log", "level"));
        put("AETHERV_LOG_FORMAT", self.str_of("log", "format"));
        put("AETHERV_HEALTH_LISTEN", self.str_of("health", "listen"));
        put(
            "AETHERV_AGE_RECIPIENTS",
            self.str_of("bot", "age_recipients"),
        );
        put(
            "AETHERV_SIGNING_KEY_FILE",
            self.str_of("bot", "signing_key_file"),
        );
        put(
            "AETHERV_TEMPLATES",
            self.doc
                .get("templates_dir")
                .and_then(|v| v.as_str().map(String::from)),
        );
        Ok(out)
    }
}

/// Makes relative file and directory paths absolute (from the configuration's folder).
fn resolve_paths(doc: &mut Map<String, Value>, keys: &[Key], base: &Path) {
    for key in keys {
        let Some(v) = doc.get_mut(key.name) else {
            continue;
        };
        match (key.ty, v) {
            (Ty::File | Ty::Dir | Ty::SecretFile, Value::String(s)) => {
                let joined = base.join(s.as_str()).to_string_lossy().into_owned();
                if Path::new(s.as_str()).is_relative() {
                    *s = joined;
                }
            }
            (Ty::Section(inner), Value::Object(m)) => resolve_paths(m, inner, base),
            (Ty::Table(inner), Value::Array(items)) => {
                for item in items.iter_mut() {
                    if let Value::Object(m) = item {
                        resolve_paths(m, inner, base);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `AETHERV_<SECTION>_<KEY>` over the file's value, for every scalar and list key.
fn apply_env(doc: &mut Map<String, Value>, env: &dyn Fn(&str) -> Option<String>) {
    for (section, key) in schema::overridable() {
        let Some(raw) = env(&schema::env_name(section, key.name)) else {
            continue;
        };
        let value = match key.ty {
            Ty::Uint => raw
                .trim()
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or(Value::String(raw)),
            Ty::Bool => match raw.trim() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => Value::String(raw),
            },
            Ty::StrList => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.into()))
                    .collect(),
            ),
            _ => Value::String(raw),
        };
        let entry = doc
            .entry(section.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(key.name.to_string(), value);
        }
    }
}

/// The `--config` path of the command line, if any (read before the command line is parsed,
/// so that the file's `log` and `health` settings become defaults of the global flags).
fn config_arg(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// Before anything else runs: when `--config` names an `aetherv.yaml`, its process-wide
/// settings become defaults that [`crate::cmd::env_lookup`] reads after the environment.
/// Errors are said on stderr with exit 64.
pub fn preload(args: &[String]) -> Result<(), ExitCode> {
    let Some(path) = config_arg(args) else {
        return Ok(());
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let loaded = Unified::load(&path, &env).map_err(|e| crate::cmd::fail("aetherv", 64, e))?;
    let Some(u) = loaded else { return Ok(()) };
    let defaults = u
        .process_env(&env)
        .map_err(|e| crate::cmd::fail("aetherv", 64, e))?;
    let _ = super::FILE_ENV.set(defaults);
    Ok(())
}

/// One URL per `host:port` of `addresses`, with the scheme, credentials, vhost and query of
/// `url` (its first URL when it lists several), comma-separated. Errors never repeat the URL
/// (it carries a password).
pub fn with_addresses(url: &str, addresses: &[String]) -> Result<String, String> {
    let first = url.split(',').next().unwrap_or_default().trim();
    let (scheme, rest) = first
        .split_once("://")
        .ok_or_else(|| "the broker URL is not an amqp:// or amqps:// URL".to_string())?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let userinfo = authority
        .rfind('@')
        .map(|at| &authority[..=at])
        .unwrap_or("");
    let mut out = Vec::new();
    for (i, a) in addresses.iter().enumerate() {
        let bad = a.is_empty() || a.contains(['/', '@', '?', ',', ' ']);
        if bad {
            return Err(format!(
                "broker.addresses[{i}] is not a host:port (no scheme, credentials or path)"
            ));
        }
        out.push(format!("{scheme}://{userinfo}{a}{tail}"));
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod address_tests {
    use super::with_addresses;

    #[test]
    fn each_address_gets_the_urls_credentials_vhost_and_query() {
        let a = ["rmq1:5672".to_string(), "10.0.0.2:5673".to_string()];
        assert_eq!(
            with_addresses("amqps://bot:p@ss@old:1/prod?heartbeat=10", &a).expect("ok"),
            "amqps://bot:p@ss@rmq1:5672/prod?heartbeat=10,amqps://bot:p@ss@10.0.0.2:5673/prod?heartbeat=10"
        );
        assert_eq!(
            with_addresses("amqp://old", &a[..1]).expect("ok"),
            "amqp://rmq1:5672"
        );
    }

    #[test]
    fn a_wrong_address_is_named_by_position_and_the_url_never_repeated() {
        let e = with_addresses("amqp://u:hunter2@a/%2f", &["amqp://x:1".to_string()])
            .expect_err("refused");
        assert!(e.contains("broker.addresses[0]"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = with_addresses("hunter2", &["a:1".to_string()]).expect_err("refused");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
