//! Slack identities: a user id plus the user groups (by id) the user belongs to, turned into a
//! [`Principal`] for the core role check. Group membership comes from `usergroups.users.list`
//! for the groups the roles configuration names (`slack-group:S…`), cached and refreshed
//! periodically. Display names are never used.

use crate::Client;
use aetherv_core::rbac::{Principal, RbacConfig};
use aetherv_core::{Platform, Requester};
use slack_morphism::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often group membership is refreshed by default.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

/// The user-group ids a roles configuration names.
pub fn slack_groups(cfg: &RbacConfig) -> Vec<String> {
    let ids: BTreeSet<String> = cfg
        .groups
        .iter()
        .flat_map(|g| g.members.iter())
        .filter_map(|m| m.strip_prefix("slack-group:"))
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .collect();
    ids.into_iter().collect()
}

/// Cached user-group membership.
#[derive(Debug, Default)]
pub struct Identity {
    groups: Vec<String>,
    members: RwLock<HashMap<String, Vec<String>>>,
}

impl Identity {
    /// Membership of `groups`, empty until the first refresh.
    pub fn new(groups: Vec<String>) -> Self {
        Identity {
            groups,
            members: RwLock::new(HashMap::new()),
        }
    }

    /// The principal for a Slack user id.
    pub fn principal(&self, user: &str) -> Principal {
        let platform_groups = self
            .members
            .read()
            .map(|m| m.get(user).cloned().unwrap_or_default())
            .unwrap_or_default();
        Principal {
            id: Requester {
                platform: Platform::Slack,
                user_id: user.to_string(),
            },
            platform_groups,
        }
    }

    /// Reloads every group's members. A group that fails keeps its previous members.
    pub async fn refresh(&self, client: &Client, token: &SlackApiToken) {
        let session = client.open_session(token);
        let mut by_group: HashMap<String, Option<Vec<String>>> = HashMap::new();
        for g in &self.groups {
            let req = SlackApiUserGroupsUsersListRequest::new(SlackUserGroupId(g.clone()));
            match session.usergroups_users_list(&req).await {
                Ok(r) => {
                    by_group.insert(g.clone(), Some(r.users.into_iter().map(|u| u.0).collect()));
                }
                Err(e) => {
                    tracing::warn!(group = %g, error = %e, "user group refresh failed");
                    by_group.insert(g.clone(), None);
                }
            }
        }
        let Ok(mut members) = self.members.write() else {
            return;
        };
        // Start from the old membership of groups that failed, then add fresh ones.
        let mut next: HashMap<String, Vec<String>> = HashMap::new();
        for (user, groups) in members.iter() {
            for g in groups {
                if matches!(by_group.get(g), Some(None)) {
                    next.entry(user.clone()).or_default().push(g.clone());
                }
            }
        }
        for (g, users) in by_group {
            for u in users.unwrap_or_default() {
                next.entry(u).or_default().push(g.clone());
            }
        }
        *members = next;
    }

    /// Refreshes now and then every `every` until `stop`.
    pub async fn run(
        self: Arc<Self>,
        client: Arc<Client>,
        token: SlackApiToken,
        every: Duration,
        stop: CancellationToken,
    ) {
        if self.groups.is_empty() {
            return;
        }
        loop {
            self.refresh(&client, &token).await;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_read_from_the_roles_configuration() {
        let cfg: RbacConfig = serde_saphyr::from_str(
            "groups:\n  - name: a\n    roles: [approver]\n    members: [\"slack:U1\", \"slack-group:S9\", \"slack-group:S1\"]\n  - name: b\n    members: [\"slack-group:S1\"]\n",
        )
        .expect("yaml");
        assert_eq!(slack_groups(&cfg), vec!["S1".to_string(), "S9".to_string()]);
        let id = Identity::new(vec!["S1".into()]);
        let p = id.principal("U1");
        assert_eq!(p.id.platform, Platform::Slack);
        assert!(p.platform_groups.is_empty());
    }
}
