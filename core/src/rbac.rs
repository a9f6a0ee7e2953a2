//! Identity and roles: which immutable platform identities hold which roles and groups, and
//! which role each command needs.
//!
//! The configuration lists groups; each group grants roles and has members written as
//! `<kind>:<id>` with kind `console`, `slack`, `slack-group` (a Slack user group id), `discord`,
//! `discord-role` (a Discord role id), `amqp` (a RabbitMQ user), `api` (an HTTP API token name
//! or OIDC subject) or `api-group` (a value of an OIDC token's roles claim). Only immutable ids
//! are accepted, never display names.
//! Approval policies name these groups. Pure: no I/O.

use crate::command::CommandName;
use crate::contract::job::{Platform, Requester};
use serde::Deserialize;
use std::collections::BTreeSet;

/// A role. `admin` implies every other role; `operator` and `approver` imply `reader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May look: lists, job status, hosts.
    Reader,
    /// May change things: deploy, power, delete, disks, NICs, cancel.
    Operator,
    /// May vote on approval requests.
    Approver,
    /// Everything.
    Admin,
}

impl Role {
    /// The role's name as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

/// The role a command needs.
pub fn required_role(command: CommandName) -> Role {
    match command {
        CommandName::VmList
        | CommandName::VmShow
        | CommandName::Job
        | CommandName::Jobs
        | CommandName::Hosts
        | CommandName::Help => Role::Reader,
        CommandName::Deploy
        | CommandName::VmPower
        | CommandName::VmDelete
        | CommandName::DiskAdd
        | CommandName::DiskResize
        | CommandName::NicAdd
        | CommandName::VmUpdate
        | CommandName::DiskRemove
        | CommandName::NicRemove
        | CommandName::Retry
        | CommandName::Cancel => Role::Operator,
        CommandName::Approve | CommandName::Reject => Role::Approver,
    }
}

/// The role a job request needs, whatever front door it came through (an AMQP producer's
/// request is checked like the chat command that makes the same kind of job).
pub fn required_role_for_kind(_kind: crate::JobKind) -> Role {
    // Every job-making command needs an operator (see [`required_role`]).
    Role::Operator
}

/// One group of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Group name (used by approval policies).
    pub name: String,
    /// Roles the group grants.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Members as `<kind>:<id>`.
    #[serde(default)]
    pub members: Vec<String>,
}

/// The roles configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RbacConfig {
    /// The groups.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

/// Why a roles configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RbacError {
    /// Not valid YAML for this structure.
    #[error("invalid roles configuration")]
    Yaml(#[source] Box<serde_saphyr::Error>),
    /// A member is not `<kind>:<id>` with a known kind.
    #[error("invalid member {0}")]
    InvalidMember(String),
}

/// Who is acting: the immutable identity plus the platform groups/roles it carries right now
/// (Slack user-group ids, Discord role ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The identity.
    pub id: Requester,
    /// Platform group ids (Slack user groups, Discord roles).
    pub platform_groups: Vec<String>,
}

impl Principal {
    /// A client of the HTTP API: a bearer token's configured name, or an OIDC token's subject
    /// with its roles claim's values as groups (`api-group:<value>` members); shown and
    /// configured as `api:<name>`.
    pub fn api(name: &str, groups: Vec<String>) -> Self {
        Principal {
            id: Requester {
                platform: Platform::Api,
                user_id: name.to_string(),
            },
            platform_groups: groups,
        }
    }

    /// An AMQP producer, by its RabbitMQ user (verified by RabbitMQ as the message's
    /// `user_id`); shown and configured as `amqp:<user>`.
    pub fn amqp(user: &str) -> Self {
        Principal {
            id: Requester {
                platform: Platform::Amqp,
                user_id: user.to_string(),
            },
            platform_groups: Vec::new(),
        }
    }

    /// A console user (no platform groups).
    pub fn console(user: &str) -> Self {
        Principal {
            id: Requester {
                platform: Platform::Console,
                user_id: user.to_string(),
            },
            platform_groups: Vec::new(),
        }
    }
}

/// What a principal holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Roles (explicit; use [`Grants::has`] for implications).
    pub roles: BTreeSet<Role>,
    /// Group names.
    pub groups: BTreeSet<String>,
}

impl Grants {
    /// True when the roles imply `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&Role::Admin)
            || self.roles.contains(&role)
            || (role == Role::Reader && !self.roles.is_empty())
    }
}

/// The resolved configuration.
#[derive(Debug, Clone, Default)]
pub struct Rbac {
    groups: Vec<(GroupConfig, Vec<Member>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    User(Platform, String),
    PlatformGroup(Platform, String),
}

fn parse_member(s: &str) -> Result<Member, RbacError> {
    let (kind, id) = s
        .split_once(':')
        .filter(|(_, id)| !id.trim().is_empty())
        .ok_or_else(|| RbacError::InvalidMember(s.to_string()))?;
    let id = id.trim().to_string();
    Ok(match kind.trim() {
        "console" => Member::User(Platform::Console, id),
        "slack" => Member::User(Platform::Slack, id),
        "discord" => Member::User(Platform::Discord, id),
        "amqp" => Member::User(Platform::Amqp, id),
        "api" => Member::User(Platform::Api, id),
        "slack-group" => Member::PlatformGroup(Platform::Slack, id),
        "discord-role" => Member::PlatformGroup(Platform::Discord, id),
        "api-group" => Member::PlatformGroup(Platform::Api, id),
        _ => return Err(RbacError::InvalidMember(s.to_string())),
    })
}

impl Rbac {
    /// Resolves a configuration.
    pub fn new(config: RbacConfig) -> Result<Self, RbacError> {
        let mut groups = Vec::new();
        for g in config.groups {
            let members = g
                .members
                .iter()
                .map(|m| parse_member(m))
                .collect::<Result<Vec<_>, _>>()?;
            groups.push((g, members));
        }
        Ok(Rbac { groups })
    }

    /// Parses and resolves a YAML configuration.
    pub fn from_yaml(text: &str) -> Result<Self, RbacError> {
        let cfg: RbacConfig =
            serde_saphyr::from_str(text).map_err(|e| RbacError::Yaml(Box::new(e)))?;
        Rbac::new(cfg)
    }

    /// What `who` holds.
    pub fn grants(&self, who: &Principal) -> Grants {
        let mut out = Grants::default();
        for (g, members) in &self.groups {
            let member = members.iter().any(|m| match m {
                Member::User(p, id) => *p == who.id.platform && *id == who.id.user_id,
                Member::PlatformGroup(p, id) => {
                    *p == who.id.platform && who.platform_groups.iter().any(|x| x == id)
                }
            });
            if member {
                out.roles.extend(g.roles.iter().copied());
                out.groups.insert(g.name.clone());
            }
        }
        out
    }

    /// The caller's grants when it holds `need`, else the missing role.
    pub fn check_role(&self, who: &Principal, need: Role) -> Result<Grants, Role> {
        let grants = self.grants(who);
        if grants.has(need) {
            Ok(grants)
        } else {
            Err(need)
        }
    }

    /// `Ok` when `who` may run `command`, else the role it needs.
    pub fn check(&self, who: &Principal, command: CommandName) -> Result<Grants, Role> {
        if command == CommandName::Help {
            return Ok(self.grants(who));
        }
        self.check_role(who, required_role(command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
groups:
  - name: ops
    roles: [operator]
    members: ["console:alice", "slack-group:S01"]
  - name: approvers
    roles: [approver]
    members: ["console:bob", "discord-role:42"]
  - name: admins
    roles: [admin]
    members: ["slack:UADMIN"]
"#;

    fn slack(user: &str, groups: &[&str]) -> Principal {
        Principal {
            id: Requester {
                platform: Platform::Slack,
                user_id: user.into(),
            },
            platform_groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn roles_come_from_users_and_platform_groups() {
        let rbac = Rbac::from_yaml(CFG).expect("valid");
        let alice = Principal::console("alice");
        assert!(rbac.check(&alice, CommandName::Deploy).is_ok());
        assert!(rbac.check(&alice, CommandName::VmList).is_ok());
        assert_eq!(
            rbac.check(&alice, CommandName::Approve).err(),
            Some(Role::Approver)
        );
        let bob = Principal::console("bob");
        assert_eq!(
            rbac.check(&bob, CommandName::Deploy).err(),
            Some(Role::Operator)
        );
        assert!(rbac.grants(&bob).groups.contains("approvers"));
        assert!(rbac
            .check(&slack("U9", &["S01"]), CommandName::Deploy)
            .is_ok());
        // A console user named like a Slack id gets nothing from the Slack entry.
        assert_eq!(
            rbac.check(&Principal::console("UADMIN"), CommandName::VmList)
                .err(),
            Some(Role::Reader)
        );
        assert!(rbac
            .check(&slack("UADMIN", &[]), CommandName::Approve)
            .is_ok());
        assert!(rbac
            .check(&Principal::console("nobody"), CommandName::Help)
            .is_ok());
    }

    #[test]
    fn bad_members_are_refused() {
        let err = Rbac::from_yaml("groups: [{name: x, members: [\"teams:1\"]}]");
        assert!(matches!(err, Err(RbacError::InvalidMember(m)) if m == "teams:1"));
    }
}
