//! The Discord bot's configuration file (`aetherv discord --config FILE`, YAML). Secrets are
//! not in the file: it names the environment variable that holds the bot token.

use serde::Deserialize;
use std::path::PathBuf;

/// How Discord reaches the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    /// The Gateway: one WebSocket out from the bot (no public URL), interactions arrive as
    /// `INTERACTION_CREATE` and are answered through the REST callback.
    #[default]
    Gateway,
    /// The HTTP interactions endpoint (a public HTTPS URL Discord posts signed requests to).
    Http,
}

fn default_api_url() -> String {
    crate::DEFAULT_API_URL.to_string()
}
fn default_bot_token_env() -> String {
    "DISCORD_BOT_TOKEN".into()
}
fn default_listen() -> String {
    "0.0.0.0:3001".into()
}

/// The configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// `gateway` (default) or `http` (the interactions endpoint).
    #[serde(default)]
    pub mode: ModeName,
    /// The Gateway's WebSocket URL (`wss://…`; default: what `GET /gateway` answers, normally
    /// `wss://gateway.discord.gg`); set for a proxy or a test fake.
    #[serde(default)]
    pub gateway_url: Option<String>,
    /// The application id (snowflake).
    pub application_id: String,
    /// The application's public key (hex, from the Developer Portal; needed in HTTP mode).
    #[serde(default)]
    pub public_key: String,
    /// Environment variable holding the bot token.
    #[serde(default = "default_bot_token_env")]
    pub bot_token_env: String,
    /// REST base URL (default `https://discord.com/api/v10`; set for a proxy or a fake).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Listen address of the interactions endpoint (`mode: http`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Channel id for job messages.
    pub channel: String,
    /// Channel id for approval requests.
    #[serde(default)]
    pub approvals_channel: Option<String>,
    /// Roles configuration file (members as `discord:<user id>` / `discord-role:<role id>`).
    pub roles: PathBuf,
    /// Approval policy file.
    pub policy: PathBuf,
    /// Hosts offered before the first inventory arrives.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Template override directory: `<dir>/discord/<name>.hbs` replaces the built-in file
    /// (default: `AETHERV_TEMPLATES`, else none).
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// Register `/aether` at start by bulk overwrite (default true).
    #[serde(default = "default_true")]
    pub register_commands: bool,
    /// Register it in this guild (immediate) instead of globally (up to an hour).
    #[serde(default)]
    pub guild_id: Option<String>,
}

fn default_true() -> bool {
    true
}

pub use aetherv_bot::chat::ConfigError;

impl DiscordConfig {
    /// Parses a configuration.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        aetherv_bot::chat::parse_config("discord", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_gateway_mode_and_discord_api() {
        let c = DiscordConfig::from_yaml(
            "application_id: \"1\"\npublic_key: ab\nchannel: \"2\"\nroles: r.yaml\npolicy: p.yaml\n",
        )
        .expect("config");
        assert_eq!(c.mode, ModeName::Gateway);
        assert_eq!(c.gateway_url, None);
        assert_eq!(c.api_url, "https://discord.com/api/v10");
        assert_eq!(c.bot_token_env, "DISCORD_BOT_TOKEN");
        // A token in the file is refused (unknown field); so is an unknown mode.
        assert!(DiscordConfig::from_yaml(
            "application_id: \"1\"\npublic_key: ab\nchannel: \"2\"\nroles: r\npolicy: p\nbot_token: x\n"
        )
        .is_err());
        assert!(DiscordConfig::from_yaml(
            "mode: websocket\napplication_id: \"1\"\npublic_key: ab\nchannel: \"2\"\nroles: r\npolicy: p\n"
        )
        .is_err());
        let h = DiscordConfig::from_yaml(
            "mode: http\ngateway_url: ws://127.0.0.1:9/\napplication_id: \"1\"\npublic_key: ab\nchannel: \"2\"\nroles: r\npolicy: p\n",
        )
        .expect("config");
        assert_eq!(h.mode, ModeName::Http);
        assert_eq!(h.gateway_url.as_deref(), Some("ws://127.0.0.1:9/"));
    }
}
