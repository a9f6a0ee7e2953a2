//! Worker configuration: YAML with `AETHERV_*` environment overrides.
//!
//! Secrets (host passwords) can come from the file, an environment variable named in the file,
//! or a file path; they are never accepted on the command line and never logged (`Debug` hides
//! them).

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Default topology prefix.
pub const DEFAULT_PREFIX: &str = "aetherv";
/// Default inventory poll interval.
pub const DEFAULT_INVENTORY_INTERVAL_SECS: u64 = 60;
/// Default grace period for in-flight jobs on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Default deadline of one agent operation.
pub const DEFAULT_OPERATION_TIMEOUT_SECS: u64 = 900;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not match the configuration format.
    #[error("invalid worker configuration: {0}")]
    Parse(String),
    /// A cross-field rule failed.
    #[error("invalid worker configuration: {0}")]
    Invalid(String),
}

/// The whole worker configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// AMQP URL; `AETHERV_AMQP_URL` overrides it.
    #[serde(default)]
    pub amqp_url: Option<String>,
    /// Topology name prefix (`aetherv`); `AETHERV_PREFIX` overrides it.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// This worker's id in events; `AETHERV_WORKER_ID` overrides it; default host name + pid.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// Agent install directory on the hosts.
    #[serde(default = "default_install_dir")]
    pub install_dir: String,
    /// Inventory poll interval in seconds (0 disables polling).
    #[serde(default = "default_inventory_interval")]
    pub inventory_interval_secs: u64,
    /// How long in-flight jobs may run after SIGTERM before they are returned to the queue.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Deadline of one agent operation, in seconds.
    #[serde(default = "default_op_timeout")]
    pub operation_timeout_secs: u64,
    /// Keep one WinRS shell open per host between jobs (default true): a job's operation then
    /// skips the connection, authentication and shell creation. Set false for hosts whose
    /// WinRM allows very few shells per user.
    #[serde(default = "default_keep_shells")]
    pub keep_shells: bool,
    /// File holding this worker's age identity (`AGE-SECRET-KEY-1…`, as `age-keygen` writes
    /// it), which opens the jobs' sealed secrets; `AETHERV_AGE_IDENTITY` (the key itself) or
    /// `AETHERV_AGE_IDENTITY_FILE` override it.
    #[serde(default)]
    pub age_identity_file: Option<PathBuf>,
    /// The bots' public job-signing keys (`<key id>:<base64>`); `AETHERV_JOB_SIGNING_KEYS`
    /// (comma-separated) overrides them. When any is configured, jobs that are unsigned or
    /// not signed by one of them are dead-lettered (`unsigned`, `bad_signature`) unrun.
    #[serde(default)]
    pub job_signing_keys: Vec<String>,
    /// The Hyper-V hosts this worker serves.
    pub hosts: Vec<HostConfig>,
}

/// One Hyper-V host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Host name (routing key, queue name part).
    pub name: String,
    /// WinRM endpoint, e.g. `https://hv01.corp:5986/wsman`.
    pub endpoint: String,
    /// Credentials.
    pub auth: AuthConfig,
    /// TLS options for `https` endpoints.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Failover cluster the host belongs to, if any.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// Credentials for a host.
#[derive(Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// HTTP Basic (over HTTPS in production).
    Basic {
        /// User name (`DOMAIN\user` or `user@domain`).
        username: String,
        /// Password inline (prefer `password_env` or `password_file`).
        #[serde(default)]
        password: Option<String>,
        /// Name of an environment variable holding the password.
        #[serde(default)]
        password_env: Option<String>,
        /// Path of a file holding the password (trailing newline trimmed).
        #[serde(default)]
        password_file: Option<PathBuf>,
    },
    /// NTLMv2; over `http` every message is sealed (MS-WSMV message encryption).
    Ntlm {
        /// User name (`user`, `DOMAIN\user` or `user@domain`).
        username: String,
        /// Domain (or the host name for a local account), when not part of `username`.
        #[serde(default)]
        domain: Option<String>,
        /// Password inline (prefer `password_env` or `password_file`).
        #[serde(default)]
        password: Option<String>,
        /// Name of an environment variable holding the password.
        #[serde(default)]
        password_env: Option<String>,
        /// Path of a file holding the password (trailing newline trimmed).
        #[serde(default)]
        password_file: Option<PathBuf>,
    },
    /// Kerberos (MIT GSSAPI; the worker must be built with the `kerberos` feature): a principal
    /// with a password (`password`, `password_env` or `password_file`) or with a `keytab`. Over
    /// `http` every message is sealed, as with NTLM.
    Kerberos {
        /// Client principal, `user@REALM`.
        principal: String,
        /// Password inline (prefer `password_env`, `password_file` or `keytab`).
        #[serde(default)]
        password: Option<String>,
        /// Name of an environment variable holding the password.
        #[serde(default)]
        password_env: Option<String>,
        /// Path of a file holding the password (trailing newline trimmed).
        #[serde(default)]
        password_file: Option<PathBuf>,
        /// Keytab holding the principal's keys, instead of a password. All hosts of one worker
        /// share one keytab (MIT's client keytab of the process).
        #[serde(default)]
        keytab: Option<PathBuf>,
        /// The host's service principal; `HTTP/<endpoint host>` when unset.
        #[serde(default)]
        spn: Option<String>,
    },
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthConfig::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            AuthConfig::Ntlm {
                username, domain, ..
            } => f
                .debug_struct("Ntlm")
                .field("username", username)
                .field("domain", domain)
                .field("password", &"<redacted>")
                .finish(),
            AuthConfig::Kerberos {
                principal,
                keytab,
                spn,
                ..
            } => f
                .debug_struct("Kerberos")
                .field("principal", principal)
                .field("password", &"<redacted>")
                .field("keytab", keytab)
                .field("spn", spn)
                .finish(),
        }
    }
}

/// TLS settings for one host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM bundle of CAs to trust instead of the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate validation (logs a warning; never for production).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.into()
}
fn default_install_dir() -> String {
    aetherv_core::contract::command::DEFAULT_INSTALL_DIR.into()
}
fn default_keep_shells() -> bool {
    true
}

fn default_inventory_interval() -> u64 {
    DEFAULT_INVENTORY_INTERVAL_SECS
}
fn default_grace() -> u64 {
    DEFAULT_SHUTDOWN_GRACE_SECS
}
fn default_op_timeout() -> u64 {
    DEFAULT_OPERATION_TIMEOUT_SECS
}

impl WorkerConfig {
    /// Parses YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let cfg: WorkerConfig =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        Ok(cfg)
    }

    /// Builds a configuration from JSON (the `worker` section of an `aetherv.yaml`).
    pub fn from_json(v: serde_json::Value) -> Result<Self, ConfigError> {
        serde_json::from_value(v).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Reads and parses a worker configuration file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// Applies `AETHERV_*` overrides from an environment lookup (a function so tests need not
    /// mutate the process environment).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("AETHERV_AMQP_URL").filter(|v| !v.is_empty()) {
            self.amqp_url = Some(v);
        }
        if let Some(v) = get("AETHERV_PREFIX").filter(|v| !v.is_empty()) {
            self.prefix = v;
        }
        if let Some(v) = get("AETHERV_WORKER_ID").filter(|v| !v.is_empty()) {
            self.worker_id = Some(v);
        }
    }

    /// Checks cross-field rules: at least one host, unique valid names, http(s) endpoints.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.hosts.is_empty() {
            return Err(ConfigError::Invalid("no hosts configured".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for h in &self.hosts {
            let Some(name) = aetherv_core::HostName::parse(&h.name) else {
                return Err(ConfigError::Invalid(format!(
                    "invalid host name {:?}",
                    h.name
                )));
            };
            if h.name.trim().to_ascii_lowercase().starts_with("cluster.") {
                return Err(ConfigError::Invalid(format!(
                    "host name {:?}: names starting with `cluster.` are reserved for cluster placement queues",
                    h.name
                )));
            }
            if let Some(c) = &h.cluster {
                if aetherv_core::HostName::parse(c).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "host {}: invalid cluster name {c:?}",
                        h.name
                    )));
                }
            }
            if !seen.insert(name) {
                return Err(ConfigError::Invalid(format!(
                    "host {:?} listed twice",
                    h.name
                )));
            }
            if !(h.endpoint.starts_with("http://") || h.endpoint.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "host {}: endpoint must start with http:// or https://",
                    h.name
                )));
            }
        }
        Ok(())
    }

    /// The worker id to report in events.
    pub fn worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "worker".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// This worker's age identity: `AETHERV_AGE_IDENTITY` (key text), else
    /// `AETHERV_AGE_IDENTITY_FILE`, else `age_identity_file`; `None` when none is configured.
    pub fn age_identity(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<aetherv_core::secrets::Identity>, ConfigError> {
        let bad = |e: aetherv_core::secrets::SecretsError| ConfigError::Invalid(e.to_string());
        if let Some(text) = env("AETHERV_AGE_IDENTITY").filter(|v| !v.trim().is_empty()) {
            let text = zeroize::Zeroizing::new(text);
            return aetherv_core::secrets::parse_identity(&text)
                .map(Some)
                .map_err(bad);
        }
        let path = env("AETHERV_AGE_IDENTITY_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| self.age_identity_file.clone());
        let Some(path) = path else {
            return Ok(None);
        };
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|source| {
            ConfigError::Read {
                path: path.clone(),
                source,
            }
        })?);
        aetherv_core::secrets::parse_identity(&text)
            .map(Some)
            .map_err(bad)
    }

    /// The verifier of job signatures (empty when no key is configured).
    pub fn job_verifier(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<aetherv_core::signing::Verifier, ConfigError> {
        let from_env = env("AETHERV_JOB_SIGNING_KEYS").filter(|v| !v.trim().is_empty());
        let keys: Vec<String> = match from_env {
            Some(v) => v.split(',').map(|k| k.trim().to_owned()).collect(),
            None => self.job_signing_keys.clone(),
        };
        aetherv_core::signing::Verifier::from_texts(keys.iter().map(String::as_str))
            .map_err(|e| ConfigError::Invalid(format!("job_signing_keys: {e}")))
    }

    /// Agent operation deadline.
    pub fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout_secs.max(1))
    }
}

impl AuthConfig {
    /// Resolves the password from inline, environment or file.
    pub fn password(&self, env: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        let (AuthConfig::Basic {
            password,
            password_env,
            password_file,
            ..
        }
        | AuthConfig::Ntlm {
            password,
            password_env,
            password_file,
            ..
        }
        | AuthConfig::Kerberos {
            password,
            password_env,
            password_file,
            ..
        }) = self;
        if let Some(p) = password {
            return Ok(p.clone());
        }
        if let Some(var) = password_env {
            return env(var).ok_or_else(|| {
                ConfigError::Invalid(format!("password environment variable {var} is not set"))
            });
        }
        if let Some(path) = password_file {
            return std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                });
        }
        Err(ConfigError::Invalid(match self {
            AuthConfig::Kerberos { .. } => {
                "kerberos auth needs keytab, password, password_env or password_file".into()
            }
            _ => "basic auth needs password, password_env or password_file".into(),
        }))
    }

    /// The Kerberos keytab of this host's credentials, if it uses one.
    pub fn keytab(&self) -> Option<&std::path::Path> {
        match self {
            AuthConfig::Kerberos {
                keytab: Some(k), ..
            } => Some(k),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "
hosts:
  - name: HV01
    endpoint: http://127.0.0.1:5985/hv01/wsman
    auth: { kind: basic, username: aetherv, password_env: HV_PW }
";

    #[test]
    fn parses_defaults_and_env_overrides() {
        let mut c = WorkerConfig::from_yaml(YAML).expect("parses");
        assert_eq!(c.prefix, "aetherv");
        assert_eq!(c.inventory_interval_secs, 60);
        c.apply_env(|k| (k == "AETHERV_PREFIX").then(|| "t-1".to_string()));
        assert_eq!(c.prefix, "t-1");
        c.check().expect("valid");
        let pw = c.hosts[0]
            .auth
            .password(|k| (k == "HV_PW").then(|| "s3cret".to_string()))
            .expect("password");
        assert_eq!(pw, "s3cret");
        assert!(!format!("{:?}", c).contains("s3cret"));
    }

    #[test]
    fn age_identity_from_env_or_file() {
        use aetherv_core::secrets;
        let c = WorkerConfig::from_yaml(YAML).expect("parses");
        assert!(c.age_identity(|_| None).expect("none").is_none());
        let id = secrets::generate_identity();
        let text = secrets::identity_text(&id).to_string();
        let got = c
            .age_identity(|k| (k == "AETHERV_AGE_IDENTITY").then(|| text.clone()))
            .expect("env")
            .expect("some");
        assert_eq!(got.to_public().to_string(), id.to_public().to_string());
        let dir = std::env::temp_dir().join(format!("aetherv-age-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("worker.key");
        std::fs::write(&file, format!("# created by a test\n{text}\n")).expect("write");
        let mut c2 = c.clone();
        c2.age_identity_file = Some(file);
        let got = c2.age_identity(|_| None).expect("file").expect("some");
        assert_eq!(got.to_public().to_string(), id.to_public().to_string());
        let Err(e) =
            c.age_identity(|k| (k == "AETHERV_AGE_IDENTITY").then(|| "AGE-SECRET-KEY-1XYZ".into()))
        else {
            panic!("an invalid identity was accepted");
        };
        assert!(!e.to_string().contains("XYZ"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rejects_unknown_fields_and_bad_hosts() {
        assert!(WorkerConfig::from_yaml("hosts: []\nsurprise: 1\n").is_err());
        let c = WorkerConfig::from_yaml("hosts: []\n").expect("parses");
        assert!(c.check().is_err());
        let dup = format!("{YAML}  - name: hv01\n    endpoint: http://x/wsman\n    auth: {{ kind: basic, username: a, password: b }}\n");
        let c = WorkerConfig::from_yaml(&dup).expect("parses");
        assert!(c
            .check()
            .expect_err("duplicate")
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn ntlm_auth_parses_and_redacts() {
        let yaml = "hosts:\n  - name: hv01\n    endpoint: http://127.0.0.1:5985/wsman\n    auth: { kind: ntlm, username: aetherv, domain: LAB, password: n7lm-pw }\n";
        let c = WorkerConfig::from_yaml(yaml).expect("parses");
        c.check().expect("valid");
        let AuthConfig::Ntlm {
            username, domain, ..
        } = &c.hosts[0].auth
        else {
            panic!("ntlm expected");
        };
        assert_eq!(
            (username.as_str(), domain.as_deref()),
            ("aetherv", Some("LAB"))
        );
        assert_eq!(c.hosts[0].auth.password(|_| None).expect("pw"), "n7lm-pw");
        let debug = format!("{c:?}");
        assert!(
            debug.contains("Ntlm") && !debug.contains("n7lm-pw"),
            "{debug}"
        );
        let client = crate::winrm_client(&c.hosts[0], &|_| None).expect("client");
        assert_eq!(client.endpoint(), "http://127.0.0.1:5985/wsman");
    }

    #[test]
    fn kerberos_auth_parses_and_redacts() {
        let yaml = "hosts:\n  - name: hv01\n    endpoint: http://hv01.lab.test:5985/wsman\n    auth: { kind: kerberos, principal: svc@LAB.TEST, password_env: KRB_PW, spn: HTTP/hv01.lab.test@LAB.TEST }\n  - name: hv02\n    endpoint: http://hv02.lab.test:5985/wsman\n    auth: { kind: kerberos, principal: svc@LAB.TEST, keytab: /etc/aetherv/worker.keytab }\n";
        let c = WorkerConfig::from_yaml(yaml).expect("parses");
        let env = |k: &str| (k == "KRB_PW").then(|| "kRb-s3cret".to_string());
        assert_eq!(c.hosts[0].auth.password(env).expect("pw"), "kRb-s3cret");
        assert_eq!(c.hosts[0].auth.keytab(), None);
        assert_eq!(
            c.hosts[1].auth.keytab(),
            Some(std::path::Path::new("/etc/aetherv/worker.keytab"))
        );
        let err = c.hosts[1].auth.password(|_| None).expect_err("no password");
        assert!(
            err.to_string().contains("kerberos auth needs keytab"),
            "{err}"
        );
        let debug = format!("{:?}", c.hosts[0].auth);
        assert!(
            debug.contains("svc@LAB.TEST") && !debug.contains("kRb-s3cret"),
            "{debug}"
        );
        // A missing password variable is a config error naming the variable, not the value.
        let err = crate::winrm_client(&c.hosts[0], &|_| None).expect_err("no password");
        assert!(err.to_string().contains("KRB_PW"), "{err}");
        let bad = "hosts:\n  - name: hv01\n    endpoint: http://hv01:5985/wsman\n    auth: { kind: kerberos, principal: svc@LAB.TEST, ticket: x }\n";
        assert!(WorkerConfig::from_yaml(bad).is_err());
    }
}
