//! What `aetherv.yaml` may hold: every section and key, its type, whether it is required,
//! and what it names (a file, a directory, an environment variable holding a secret).
//! The checks of `aetherv config check` and the environment overrides are driven by it.

/// A key's type.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// Any string.
    Str,
    /// A whole number ≥ 0.
    Uint,
    /// `true` / `false`.
    Bool,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A list of strings.
    StrList,
    /// A readable file.
    File,
    /// A directory.
    Dir,
    /// The name of an environment variable that holds a secret.
    SecretEnv,
    /// A file that holds a secret.
    SecretFile,
    /// A nested mapping.
    Section(&'static [Key]),
    /// A list of mappings.
    Table(&'static [Key]),
}

/// One key of a section.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Whether it must be given.
    pub required: bool,
}

const fn k(name: &'static str, ty: Ty) -> Key {
    Key {
        name,
        ty,
        required: false,
    }
}

const fn req(name: &'static str, ty: Ty) -> Key {
    Key {
        name,
        ty,
        required: true,
    }
}

/// Keys that would hold a secret in the file itself: refused (secrets come from the
/// environment or from files the configuration names).
pub const SECRET_KEYS: &[&str] = &[
    "password",
    "token",
    "bot_token",
    "app_token",
    "signing_secret",
    "url",
    "amqp_url",
    "identity",
    "age_identity",
];

const BROKER: &[Key] = &[
    k("url_env", Ty::SecretEnv),
    k("url_file", Ty::SecretFile),
    k("addresses", Ty::StrList),
    k("prefix", Ty::Str),
];

const LOG: &[Key] = &[
    k("level", Ty::Str),
    k("format", Ty::Enum(&["text", "json"])),
];

const HEALTH: &[Key] = &[k("listen", Ty::Str)];

const BOT: &[Key] = &[
    req("roles", Ty::File),
    req("policy", Ty::File),
    k("hosts", Ty::StrList),
    k("age_recipients", Ty::Str),
    k("signing_key_file", Ty::SecretFile),
];

const SLACK: &[Key] = &[
    k("mode", Ty::Enum(&["socket", "http"])),
    k("api_url", Ty::Str),
    k("bot_token_env", Ty::SecretEnv),
    k("app_token_env", Ty::SecretEnv),
    k("signing_secret_env", Ty::SecretEnv),
    k("listen", Ty::Str),
    req("channel", Ty::Str),
    k("approvals_channel", Ty::Str),
    k("group_refresh_secs", Ty::Uint),
    k("connections", Ty::Uint),
];

const DISCORD: &[Key] = &[
    k("mode", Ty::Enum(&["gateway", "http"])),
    req("application_id", Ty::Str),
    k("public_key", Ty::Str),
    k("bot_token_env", Ty::SecretEnv),
    k("api_url", Ty::Str),
    k("gateway_url", Ty::Str),
    k("listen", Ty::Str),
    req("channel", Ty::Str),
    k("approvals_channel", Ty::Str),
    k("register_commands", Ty::Bool),
    k("guild_id", Ty::Str),
];

const TLS: &[Key] = &[k("ca_file", Ty::File), k("insecure_skip_verify", Ty::Bool)];

const AUTH: &[Key] = &[
    req("kind", Ty::Enum(&["basic", "ntlm", "kerberos"])),
    k("username", Ty::Str),
    k("domain", Ty::Str),
    k("principal", Ty::Str),
    k("password_env", Ty::SecretEnv),
    k("password_file", Ty::SecretFile),
    k("keytab", Ty::SecretFile),
    k("spn", Ty::Str),
];

const HOST: &[Key] = &[
    req("name", Ty::Str),
    req("endpoint", Ty::Str),
    req("auth", Ty::Section(AUTH)),
    k("tls", Ty::Section(TLS)),
    k("cluster", Ty::Str),
];

const WORKER: &[Key] = &[
    k("worker_id", Ty::Str),
    k("install_dir", Ty::Str),
    k("inventory_interval_secs", Ty::Uint),
    k("shutdown_grace_secs", Ty::Uint),
    k("operation_timeout_secs", Ty::Uint),
    k("keep_shells", Ty::Bool),
    k("age_identity_file", Ty::SecretFile),
    k("job_signing_keys", Ty::StrList),
    req("hosts", Ty::Table(HOST)),
];

const API_TOKEN: &[Key] = &[req("name", Ty::Str), req("sha256", Ty::Str)];

const OIDC: &[Key] = &[
    req("issuer", Ty::Str),
    req("audience", Ty::Str),
    k("jwks_file", Ty::File),
    k("jwks_url", Ty::Str),
    k("roles_claim", Ty::Str),
];

/// `api`: where the HTTP API listens, its bearer tokens (a name and the token's SHA-256,
/// never the token) and OIDC.
const API: &[Key] = &[
    k("listen", Ty::Str),
    k("tokens", Ty::Table(API_TOKEN)),
    k("oidc", Ty::Section(OIDC)),
];

/// The top level of `aetherv.yaml`.
pub const TOP: &[Key] = &[
    k("broker", Ty::Section(BROKER)),
    k("log", Ty::Section(LOG)),
    k("health", Ty::Section(HEALTH)),
    k("templates_dir", Ty::Dir),
    k("bot", Ty::Section(BOT)),
    k("slack", Ty::Section(SLACK)),
    k("discord", Ty::Section(DISCORD)),
    k("worker", Ty::Section(WORKER)),
    k("api", Ty::Section(API)),
];

/// The sections a file must have to be an `aetherv.yaml` (rather than a per-command file).
pub const SECTIONS: &[&str] = &[
    "broker", "log", "health", "bot", "slack", "discord", "worker", "api",
];

/// The environment variable that overrides `section.key`: `AETHERV_<SECTION>_<KEY>`.
pub fn env_name(section: &str, key: &str) -> String {
    format!(
        "AETHERV_{}_{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

/// Every scalar key that an environment variable may override, as (section, key, type).
pub fn overridable() -> impl Iterator<Item = (&'static str, &'static Key)> {
    TOP.iter().flat_map(|s| match s.ty {
        Ty::Section(keys) => keys
            .iter()
            .filter(|k| !matches!(k.ty, Ty::Section(_) | Ty::Table(_)))
            .map(|k| (s.name, k))
            .collect::<Vec<_>>(),
        _ => Vec::new(),
    })
}
