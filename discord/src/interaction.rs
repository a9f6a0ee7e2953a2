//! Discord's interaction payloads (the fields the adapter reads; unknown fields are ignored)
//! and their translation into the engine's vocabulary: an `/aether` command with its
//! subcommand and options becomes the chat line the console would type, an Approve / Reject
//! button its job id and vote. Nothing here decides anything; the engine does.

use aetherv_core::command::DeployForm;
use aetherv_core::rbac::Principal;
use aetherv_core::{JobId, Platform, Requester};
use serde::Deserialize;
use serde_json::Value;

/// `PING`.
pub const PING: u8 = 1;
/// `APPLICATION_COMMAND`.
pub const APPLICATION_COMMAND: u8 = 2;
/// `MESSAGE_COMPONENT`.
pub const MESSAGE_COMPONENT: u8 = 3;
/// `APPLICATION_COMMAND_AUTOCOMPLETE`.
pub const AUTOCOMPLETE: u8 = 4;
/// `MODAL_SUBMIT`.
pub const MODAL_SUBMIT: u8 = 5;

/// Option type `SUB_COMMAND`.
pub const SUB_COMMAND: u8 = 1;
/// Option type `SUB_COMMAND_GROUP`.
pub const SUB_COMMAND_GROUP: u8 = 2;
/// Option type `BOOLEAN`.
pub const BOOLEAN: u8 = 5;

/// The name of the application command.
pub const COMMAND: &str = "aether";
/// The `custom_id` prefix of an Approve button (followed by the job id).
pub const APPROVE_PREFIX: &str = "aether:approve:";
/// The `custom_id` prefix of a Reject button (followed by the job id).
pub const REJECT_PREFIX: &str = "aether:reject:";

/// One interaction as Discord posts it.
#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    /// Interaction id.
    pub id: String,
    /// The application's id.
    pub application_id: String,
    /// Interaction type (1 ping, 2 command, 3 component, 4 autocomplete, 5 modal submit).
    #[serde(rename = "type")]
    pub kind: u8,
    /// The command, component or modal data.
    #[serde(default)]
    pub data: Option<Data>,
    /// The guild member who interacted (in a guild).
    #[serde(default)]
    pub member: Option<Member>,
    /// The user who interacted (in a DM).
    #[serde(default)]
    pub user: Option<User>,
    /// The channel it happened in.
    #[serde(default)]
    pub channel_id: Option<String>,
    /// The guild it happened in.
    #[serde(default)]
    pub guild_id: Option<String>,
    /// The continuation token (15 minutes).
    #[serde(default)]
    pub token: String,
    /// The message a component is on.
    #[serde(default)]
    pub message: Option<Message>,
}

/// `data` of a command, component or modal submit.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Data {
    /// Command name.
    #[serde(default)]
    pub name: String,
    /// Command options (subcommands nest their own).
    #[serde(default)]
    pub options: Vec<CommandOption>,
    /// A component's or modal's `custom_id`.
    #[serde(default)]
    pub custom_id: String,
    /// A component's type (2 button, 3 string select …).
    #[serde(default)]
    pub component_type: Option<u8>,
    /// A modal's components (either shape).
    #[serde(default)]
    pub components: Vec<Value>,
}

/// One command option.
#[derive(Debug, Clone, Deserialize)]
pub struct CommandOption {
    /// Option name.
    pub name: String,
    /// Option type.
    #[serde(rename = "type")]
    pub kind: u8,
    /// The value (leaf options).
    #[serde(default)]
    pub value: Option<Value>,
    /// Nested options (subcommands and groups).
    #[serde(default)]
    pub options: Vec<CommandOption>,
    /// The option being typed (autocomplete).
    #[serde(default)]
    pub focused: bool,
}

/// A guild member.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    /// The user.
    pub user: User,
    /// Role ids (snowflakes).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A user.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// User id (snowflake).
    pub id: String,
}

/// A message a component is attached to.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// Message id.
    pub id: String,
    /// Its channel.
    #[serde(default)]
    pub channel_id: Option<String>,
}

impl Interaction {
    /// The principal who interacted: the user id and, in a guild, the member's role ids
    /// (never names). `None` when the payload names no user.
    pub fn principal(&self) -> Option<Principal> {
        let (user, roles) = match (&self.member, &self.user) {
            (Some(m), _) => (&m.user, m.roles.clone()),
            (None, Some(u)) => (u, Vec::new()),
            (None, None) => return None,
        };
        Some(Principal {
            id: Requester {
                platform: Platform::Discord,
                user_id: user.id.clone(),
            },
            platform_groups: roles,
        })
    }
}

/// Why a command cannot become a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not `/aether`.
    #[error("unknown command /{0}")]
    UnknownCommand(String),
    /// A value the line grammar cannot carry (a double quote).
    #[error("option {0} may not contain a double quote")]
    Unquotable(String),
}

/// Positional options per command, in order (everything else is a flag or `key=value`).
const POSITIONAL: &[(&str, &[&str])] = &[
    ("vm show", &["name"]),
    ("vm start", &["name"]),
    ("vm shutdown", &["name"]),
    ("vm stop", &["name"]),
    ("vm reset", &["name"]),
    ("vm restart", &["name"]),
    ("vm delete", &["name"]),
    ("disk add", &["vm", "size_gb"]),
    ("vm update", &["name"]),
    ("disk resize", &["vm", "disk", "size_gb"]),
    ("disk remove", &["vm", "disk"]),
    ("nic add", &["vm", "network"]),
    ("nic remove", &["vm", "nic"]),
    ("job", &["id"]),
    ("cancel", &["id"]),
    ("retry", &["id"]),
];

/// Options given as `name=value` words after the positional ones, per command.
const FIELDS: &[(&str, &[&str])] = &[("vm update", &["gb_ram", "cpu_cores"])];

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn quoted(name: &str, s: &str) -> Result<String, LineError> {
    if s.contains('"') {
        return Err(LineError::Unquotable(name.to_string()));
    }
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        Ok(format!("\"{s}\""))
    } else {
        Ok(s.to_string())
    }
}

/// The chat line of an `/aether` command: subcommand group and subcommand as words, then the
/// positional options in their order, then flags (`host` → `--host V`, a true boolean
/// `delete_disks` → `--delete-disks`); `deploy` options become `key=value`.
pub fn command_line(data: &Data) -> Result<String, LineError> {
    if data.name != COMMAND {
        return Err(LineError::UnknownCommand(data.name.clone()));
    }
    let mut words = Vec::new();
    let mut opts: &[CommandOption] = &data.options;
    while let Some(sub) = opts
        .iter()
        .find(|o| o.kind == SUB_COMMAND || o.kind == SUB_COMMAND_GROUP)
    {
        words.push(sub.name.clone());
        opts = &sub.options;
    }
    let cmd = words.join(" ");
    let mut out = words;
    if out.first().map(String::as_str) == Some("deploy") {
        for o in opts {
            if let Some(v) = &o.value {
                out.push(format!("{}={}", o.name, quoted(&o.name, &text_of(v))?));
            }
        }
        return Ok(out.join(" "));
    }
    let positional = POSITIONAL
        .iter()
        .find(|(c, _)| *c == cmd)
        .map_or(&[][..], |(_, p)| *p);
    for p in positional {
        if let Some(v) = opts
            .iter()
            .find(|o| o.name == *p)
            .and_then(|o| o.value.as_ref())
        {
            out.push(quoted(p, &text_of(v))?);
        }
    }
    let fields = FIELDS
        .iter()
        .find(|(c, _)| *c == cmd)
        .map_or(&[][..], |(_, f)| *f);
    for o in opts.iter().filter(|o| fields.contains(&o.name.as_str())) {
        if let Some(v) = &o.value {
            out.push(format!("{}={}", o.name, quoted(&o.name, &text_of(v))?));
        }
    }
    for o in opts
        .iter()
        .filter(|o| !positional.contains(&o.name.as_str()) && !fields.contains(&o.name.as_str()))
    {
        let flag = format!("--{}", o.name.replace('_', "-"));
        match (&o.value, o.kind) {
            (Some(Value::Bool(true)), BOOLEAN) => out.push(flag),
            (Some(Value::Bool(false)), BOOLEAN) | (None, _) => {}
            (Some(v), _) => {
                out.push(flag);
                out.push(quoted(&o.name, &text_of(v))?);
            }
        }
    }
    Ok(out.join(" "))
}

/// `/aether deploy vm|managed`: the form and the options given, as form values.
pub fn deploy_of(data: &Data) -> Option<(DeployForm, serde_json::Map<String, Value>)> {
    if data.name != COMMAND {
        return None;
    }
    let group = data.options.iter().find(|o| o.kind == SUB_COMMAND_GROUP)?;
    if group.name != "deploy" {
        return None;
    }
    let sub = group.options.iter().find(|o| o.kind == SUB_COMMAND)?;
    let form = match sub.name.as_str() {
        "vm" => DeployForm::Vm,
        "managed" => DeployForm::Managed,
        _ => return None,
    };
    let values = sub
        .options
        .iter()
        .filter_map(|o| Some((o.name.clone(), o.value.clone()?)))
        .collect();
    Some((form, values))
}

/// The option being typed in an autocomplete interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Focused {
    /// The option's name.
    pub name: String,
    /// What was typed so far.
    pub typed: String,
    /// The other options' values (to narrow by an already chosen host).
    pub others: Vec<(String, String)>,
}

/// The option being typed in an autocomplete interaction, what was typed so far, and the
/// other options' values.
pub fn focused(data: &Data) -> Option<Focused> {
    let mut opts: &[CommandOption] = &data.options;
    while let Some(sub) = opts
        .iter()
        .find(|o| o.kind == SUB_COMMAND || o.kind == SUB_COMMAND_GROUP)
    {
        opts = &sub.options;
    }
    let f = opts.iter().find(|o| o.focused)?;
    let others = opts
        .iter()
        .filter(|o| !o.focused)
        .filter_map(|o| Some((o.name.clone(), text_of(o.value.as_ref()?))))
        .collect();
    Some(Focused {
        name: f.name.clone(),
        typed: f.value.as_ref().map(text_of).unwrap_or_default(),
        others,
    })
}

/// The job and vote of an Approve / Reject button's `custom_id`.
pub fn vote_of(custom_id: &str) -> Option<(JobId, bool)> {
    let (rest, approve) = match (
        custom_id.strip_prefix(APPROVE_PREFIX),
        custom_id.strip_prefix(REJECT_PREFIX),
    ) {
        (Some(r), _) => (r, true),
        (None, Some(r)) => (r, false),
        (None, None) => return None,
    };
    let id = uuid::Uuid::parse_str(rest).ok()?;
    Some((JobId(id), approve))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Data {
        serde_json::from_value(v).expect("data")
    }

    #[test]
    fn subcommands_and_options_become_a_line() {
        let d = data(
            json!({"name": "aether", "options": [{"name": "vm", "type": 2, "options": [
            {"name": "list", "type": 1, "options": [{"name": "host", "type": 3, "value": "hv01"}]}]}]}),
        );
        assert_eq!(command_line(&d).as_deref(), Ok("vm list --host hv01"));
        let d = data(
            json!({"name": "aether", "options": [{"name": "vm", "type": 2, "options": [
            {"name": "delete", "type": 1, "options": [
                {"name": "force", "type": 5, "value": true},
                {"name": "delete_disks", "type": 5, "value": false},
                {"name": "name", "type": 3, "value": "web01"}]}]}]}),
        );
        assert_eq!(command_line(&d).as_deref(), Ok("vm delete web01 --force"));
        let d = data(
            json!({"name": "aether", "options": [{"name": "deploy", "type": 2, "options": [
            {"name": "vm", "type": 1, "options": [
                {"name": "vm_name", "type": 3, "value": "web01"},
                {"name": "notes", "type": 3, "value": "two words"},
                {"name": "cpu", "type": 4, "value": 2}]}]}]}),
        );
        assert_eq!(
            command_line(&d).as_deref(),
            Ok("deploy vm vm_name=web01 notes=\"two words\" cpu=2")
        );
        let d = data(json!({"name": "aether", "options": [{"name": "hosts", "type": 1}]}));
        assert_eq!(command_line(&d).as_deref(), Ok("hosts"));
        let d = data(
            json!({"name": "aether", "options": [{"name": "vm", "type": 2, "options": [
            {"name": "update", "type": 1, "options": [
                {"name": "cpu_cores", "type": 4, "value": 4},
                {"name": "name", "type": 3, "value": "web01"},
                {"name": "gb_ram", "type": 4, "value": 8}]}]}]}),
        );
        assert_eq!(
            command_line(&d).as_deref(),
            Ok("vm update web01 cpu_cores=4 gb_ram=8")
        );
        let d = data(
            json!({"name": "aether", "options": [{"name": "disk", "type": 2, "options": [
            {"name": "remove", "type": 1, "options": [
                {"name": "boot_disk", "type": 5, "value": true},
                {"name": "vm", "type": 3, "value": "web01"},
                {"name": "disk", "type": 3, "value": "os.vhdx"}]}]}]}),
        );
        assert_eq!(
            command_line(&d).as_deref(),
            Ok("disk remove web01 os.vhdx --boot-disk")
        );
        let d = data(
            json!({"name": "aether", "options": [{"name": "nic", "type": 2, "options": [
            {"name": "remove", "type": 1, "options": [
                {"name": "nic", "type": 3, "value": "Network Adapter 2"},
                {"name": "vm", "type": 3, "value": "web01"}]}]}]}),
        );
        assert_eq!(
            command_line(&d).as_deref(),
            Ok("nic remove web01 \"Network Adapter 2\"")
        );
        let d = data(
            json!({"name": "aether", "options": [{"name": "jobs", "type": 1, "options": [
                {"name": "limit", "type": 4, "value": 5}, {"name": "all", "type": 5, "value": false}]}]}),
        );
        assert_eq!(command_line(&d).as_deref(), Ok("jobs --limit 5"));
        let d = data(
            json!({"name": "aether", "options": [{"name": "retry", "type": 1, "options": [
                {"name": "id", "type": 3, "value": "1a2b"}]}]}),
        );
        assert_eq!(command_line(&d).as_deref(), Ok("retry 1a2b"));
        let d = data(
            json!({"name": "aether", "options": [{"name": "cancel", "type": 1,
            "options": [{"name": "id", "type": 3, "value": "ab\"cd"}]}]}),
        );
        assert_eq!(command_line(&d), Err(LineError::Unquotable("id".into())));
        let d = data(json!({"name": "other"}));
        assert!(command_line(&d).is_err());
    }

    #[test]
    fn buttons_carry_the_job_and_the_vote() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(
            vote_of(&format!("{APPROVE_PREFIX}{id}")),
            Some((JobId(id), true))
        );
        assert_eq!(
            vote_of(&format!("{REJECT_PREFIX}{id}")),
            Some((JobId(id), false))
        );
        assert_eq!(vote_of("aether:approve:nope"), None);
        assert_eq!(vote_of("other"), None);
    }
}
