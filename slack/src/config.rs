//! The Slack bot's configuration file (`aetherv slack --config FILE`, YAML). Secrets are not
//! in the file: it names the environment variables that hold them.

use serde::Deserialize;
use std::path::PathBuf;

/// Transport choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    /// Socket Mode (no public URL).
    #[default]
    Socket,
    /// The HTTP Events API.
    Http,
}

fn default_api_url() -> String {
    crate::DEFAULT_API_URL.to_string()
}
fn default_bot_token_env() -> String {
    "SLACK_BOT_TOKEN".into()
}
fn default_app_token_env() -> String {
    "SLACK_APP_TOKEN".into()
}
fn default_signing_secret_env() -> String {
    "SLACK_SIGNING_SECRET".into()
}
fn default_listen() -> String {
    "0.0.0.0:3000".into()
}
fn default_refresh() -> u64 {
    300
}
fn default_connections() -> u32 {
    2
}

/// The configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// `socket` (default) or `http`.
    #[serde(default)]
    pub mode: ModeName,
    /// Web API base URL (default `https://slack.com/api`; set for a proxy).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Environment variable holding the bot token.
    #[serde(default = "default_bot_token_env")]
    pub bot_token_env: String,
    /// Environment variable holding the app-level token (Socket Mode).
    #[serde(default = "default_app_token_env")]
    pub app_token_env: String,
    /// Environment variable holding the signing secret (HTTP mode).
    #[serde(default = "default_signing_secret_env")]
    pub signing_secret_env: String,
    /// Listen address in HTTP mode.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Channel id for replies without a better place.
    pub channel: String,
    /// Channel id for approval requests.
    #[serde(default)]
    pub approvals_channel: Option<String>,
    /// Roles configuration file (groups, members as `slack:U…` / `slack-group:S…`).
    pub roles: PathBuf,
    /// Approval policy file.
    pub policy: PathBuf,
    /// Hosts offered before the first inventory arrives.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Seconds between user-group membership refreshes.
    #[serde(default = "default_refresh")]
    pub group_refresh_secs: u64,
    /// Template override directory: `<dir>/slack/<name>.hbs` and `<dir>/slack/text/<name>.hbs`
    /// replace the built-in files (default: `AETHERV_TEMPLATES`, else none).
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// Socket Mode connections.
    #[serde(default = "default_connections")]
    pub connections: u32,
}

pub use aetherv_bot::chat::ConfigError;

impl SlackConfig {
    /// Parses a configuration.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        aetherv_bot::chat::parse_config("slack", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_socket_mode_and_slack_api() {
        let c = SlackConfig::from_yaml("channel: C1\nroles: roles.yaml\npolicy: policy.yaml\n")
            .expect("config");
        assert_eq!(c.mode, ModeName::Socket);
        assert_eq!(c.api_url, "https://slack.com/api");
        assert_eq!(c.bot_token_env, "SLACK_BOT_TOKEN");
        assert!(
            SlackConfig::from_yaml("channel: C1\nroles: r\npolicy: p\nbot_token: x\n").is_err()
        );
    }
}
