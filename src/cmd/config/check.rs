//! `aetherv config check FILE`: every problem of an `aetherv.yaml` at once, each with its
//! line and path: unknown keys, wrong types, missing keys, secrets written in the file,
//! secrets the environment lacks, unreadable files, a roles file that names no one, hosts
//! without credentials. Values are never repeated: a secret cannot leak through a message.
use super::schema::{Key, Ty, SECRET_KEYS, TOP};
use super::tree::{self, Node};
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Line in the file (1-based; 0 when the file itself is the problem).
    pub line: u64,
    /// Dotted path (`worker.hosts[1].auth`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What the check reads besides the file: the environment and the file's folder.
pub struct Ctx<'a> {
    /// Relative paths in the file are taken from here.
    pub base: &'a Path,
    /// The environment.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

struct Checker<'a> {
    ctx: &'a Ctx<'a>,
    out: Vec<Problem>,
}

impl Checker<'_> {
    fn add(&mut self, line: u64, path: &str, message: impl Into<String>) {
        self.out.push(Problem {
            line,
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.ctx.base.join(p)
        }
    }

    fn section(&mut self, node: &Spanned<Node>, keys: &[Key], path: &str) {
        let Node::Map(entries) = &node.value else {
            self.add(
                node.referenced.line(),
                path,
                format!("must be a mapping, not {}", node.value.kind()),
            );
            return;
        };
        for (name, value) in entries {
            let here = join(path, &name.value);
            match keys.iter().find(|k| k.name == name.value) {
                Some(key) => self.value(value, key, &here),
                None if SECRET_KEYS.contains(&name.value.as_str()) => self.add(
                    name.referenced.line(),
                    &here,
                    "a secret in the file: name an environment variable (`…_env`) or a file (`…_file`) instead",
                ),
                None => {
                    let hint = closest(&name.value, keys)
                        .map(|k| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default();
                    self.add(name.referenced.line(), &here, format!("unknown key{hint}"));
                }
            }
        }
        for key in keys.iter().filter(|k| k.required) {
            if node.value.get(key.name).is_none() {
                self.add(
                    node.referenced.line(),
                    &join(path, key.name),
                    "missing (required)",
                );
            }
        }
    }

    fn value(&mut self, v: &Spanned<Node>, key: &Key, path: &str) {
        let line = v.referenced.line();
        let scalar = matches!(
            v.value,
            Node::Str(_) | Node::Int(_) | Node::Float(_) | Node::Bool(_)
        );
        let want = |w: &str| format!("must be {w}, not {}", v.value.kind());
        match key.ty {
            Ty::Str if !scalar => self.add(line, path, want("a string")),
            Ty::Str => {}
            Ty::Uint => match v.value {
                Node::Int(i) if i >= 0 => {}
                Node::Int(_) => self.add(line, path, "must be a whole number ≥ 0, not negative"),
                _ => self.add(line, path, want("a whole number ≥ 0")),
            },
            Ty::Bool if !matches!(v.value, Node::Bool(_)) => {
                self.add(line, path, want("true or false"))
            }
            Ty::Bool => {}
            Ty::Enum(choices) => match &v.value {
                Node::Str(s) if choices.contains(&s.as_str()) => {}
                _ => self.add(line, path, format!("must be one of {}", choices.join(", "))),
            },
            Ty::StrList => match &v.value {
                Node::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if !matches!(item.value, Node::Str(_) | Node::Int(_)) {
                            self.add(
                                item.referenced.line(),
                                &format!("{path}[{i}]"),
                                format!("must be a string, not {}", item.value.kind()),
                            );
                        }
                    }
                }
                _ => self.add(line, path, want("a list of strings")),
            },
            Ty::File | Ty::SecretFile | Ty::Dir => {
                let Node::Str(p) = &v.value else {
                    return self.add(line, path, want("a path"));
                };
                let full = self.resolve(p);
                let dir = matches!(key.ty, Ty::Dir);
                match std::fs::metadata(&full) {
                    Ok(m) if dir && !m.is_dir() => self.add(line, path, "is not a directory"),
                    Ok(m) if !dir && !m.is_file() => self.add(line, path, "is not a file"),
                    Ok(_) if !dir => {
                        if let Err(e) = std::fs::File::open(&full) {
                            self.add(line, path, format!("cannot read {}: {e}", full.display()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => self.add(line, path, format!("cannot read {}: {e}", full.display())),
                }
            }
            Ty::SecretEnv => match &v.value {
                Node::Str(var) if valid_env_name(var) => self.need_env(line, path, var),
                Node::Str(_) => self.add(line, path, "is not an environment variable name"),
                _ => self.add(line, path, want("an environment variable name")),
            },
            Ty::Section(keys) => self.section(v, keys, path),
            Ty::Table(keys) => match &v.value {
                Node::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.section(item, keys, &format!("{path}[{i}]"));
                    }
                }
                _ => self.add(line, path, want("a list of mappings")),
            },
        }
    }

    fn need_env(&mut self, line: u64, path: &str, var: &str) {
        if (self.ctx.env)(var).is_none_or(|v| v.trim().is_empty()) {
            self.add(
                line,
                path,
                format!("the secret's environment variable {var} is not set"),
            );
        }
    }

    /// A secret with a default variable name, when the key that would rename it is absent.
    fn default_secret(&mut self, section: &Spanned<Node>, path: &str, key: &str, default: &str) {
        if section.value.get(key).is_none() {
            self.need_env(section.referenced.line(), &join(path, key), default);
        }
    }

    fn rules(&mut self, top: &Spanned<Node>) {
        let get = |k: &str| top.value.get(k);
        let chat = get("slack").is_some() || get("discord").is_some();
        if chat && get("bot").is_none() {
            self.add(
                top.referenced.line(),
                "bot",
                "missing: the slack and discord sections need bot.roles and bot.policy",
            );
        }
        if chat || get("worker").is_some() {
            let broker = get("broker");
            let has = |k: &str| broker.is_some_and(|b| b.value.get(k).is_some());
            if !has("url_env") && !has("url_file") {
                self.need_env(
                    broker.map_or(top.referenced.line(), |b| b.referenced.line()),
                    "broker.url_env",
                    "AETHERV_AMQP_URL",
                );
            }
        }
        if let Some(slack) = get("slack") {
            let mode = slack.value.get("mode").map(|m| m.value.clone());
            self.default_secret(slack, "slack", "bot_token_env", "SLACK_BOT_TOKEN");
            if mode == Some(Node::Str("http".into())) {
                self.default_secret(slack, "slack", "signing_secret_env", "SLACK_SIGNING_SECRET");
            } else {
                self.default_secret(slack, "slack", "app_token_env", "SLACK_APP_TOKEN");
            }
        }
        if let Some(discord) = get("discord") {
            self.default_secret(discord, "discord", "bot_token_env", "DISCORD_BOT_TOKEN");
            let http =
                discord.value.get("mode").map(|m| &m.value) == Some(&Node::Str("http".into()));
            if http && discord.value.get("public_key").is_none() {
                self.add(
                    discord.referenced.line(),
                    "discord.public_key",
                    "missing: the HTTP interactions endpoint checks signatures with it",
                );
            }
        }
        if let Some(roles) = get("bot").and_then(|b| b.value.get("roles")) {
            self.roles(roles);
        }
        if let Some(Node::Seq(hosts)) = get("worker")
            .and_then(|w| w.value.get("hosts"))
            .map(|h| &h.value)
        {
            self.hosts(hosts);
        }
    }

    fn roles(&mut self, node: &Spanned<Node>) {
        let Node::Str(p) = &node.value else { return };
        let Ok(text) = std::fs::read_to_string(self.resolve(p)) else {
            return; // said by the file check
        };
        let line = node.referenced.line();
        match serde_saphyr::from_str::<aetherv_core::rbac::RbacConfig>(&text) {
            Err(_) => self.add(
                line,
                "bot.roles",
                "the roles file is not a valid roles configuration",
            ),
            Ok(cfg) if cfg.groups.iter().all(|g| g.members.is_empty()) => self.add(
                line,
                "bot.roles",
                "the roles file names no one (no group has members)",
            ),
            Ok(_) => {}
        }
    }

    fn hosts(&mut self, hosts: &[Spanned<Node>]) {
        let mut seen: Vec<String> = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            let path = format!("worker.hosts[{i}]");
            if let Some(Node::Str(name)) = h.value.get("name").map(|n| &n.value) {
                let name = name.to_ascii_lowercase();
                if seen.contains(&name) {
                    self.add(
                        h.referenced.line(),
                        &join(&path, "name"),
                        "a second host with this name",
                    );
                }
                seen.push(name);
            }
            if let Some(Node::Str(e)) = h.value.get("endpoint").map(|n| &n.value) {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    self.add(
                        h.referenced.line(),
                        &join(&path, "endpoint"),
                        "must be an http:// or https:// URL",
                    );
                }
            }
            let Some(auth) = h.value.get("auth") else {
                continue;
            };
            let has = |k: &str| auth.value.get(k).is_some();
            let kerberos =
                auth.value.get("kind").map(|k| &k.value) == Some(&Node::Str("kerberos".into()));
            let credentials =
                has("password_env") || has("password_file") || (kerberos && has("keytab"));
            if !credentials {
                let need = if kerberos {
                    "`password_env`, `password_file` or `keytab`"
                } else {
                    "`password_env` or `password_file`"
                };
                self.add(
                    auth.referenced.line(),
                    &join(&path, "auth"),
                    format!("no credentials: give {need}"),
                );
            }
            let who = if kerberos { "principal" } else { "username" };
            if auth.value.get("kind").is_some() && !has(who) {
                self.add(
                    auth.referenced.line(),
                    &format!("{path}.auth.{who}"),
                    "missing (required)",
                );
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The known key nearest to `name` (at most two edits away).
fn closest(name: &str, keys: &[Key]) -> Option<&'static str> {
    keys.iter()
        .map(|k| (edits(name, k.name), k.name))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Every problem of `text` (an `aetherv.yaml`), in file order.
pub fn check(text: &str, ctx: &Ctx<'_>) -> Vec<Problem> {
    let top = match tree::parse(text) {
        Ok(t) => t,
        Err(e) => {
            return vec![Problem {
                line: 0,
                path: String::new(),
                message: e,
            }]
        }
    };
    let mut c = Checker {
        ctx,
        out: Vec::new(),
    };
    c.section(&top, TOP, "");
    if matches!(top.value, Node::Map(_)) {
        c.rules(&top);
    }
    c.out.sort_by_key(|p| p.line);
    c.out
}
