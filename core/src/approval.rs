//! Approval policy and the approval state machine.
//!
//! A policy is an ordered list of rules; the first rule that matches a request (operation kind,
//! host/cluster pattern, size thresholds, requester role) decides how many approvals are
//! needed, from which groups, and for how long the request stays open. No matching rule means
//! no approval. [`PendingApproval`] applies votes and expiry: the requester cannot approve
//! their own request, one rejection vetoes, the first decision wins (later votes learn who
//! decided), and [`VoteOutcome::Approved`] is returned exactly once, which is what makes the
//! approved job get published exactly once. Pure: time is passed in.

use crate::contract::event::EventBody;
use crate::contract::job::{Approval, Requester};
use crate::rbac::Role;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Default time an approval request stays open.
pub const DEFAULT_APPROVAL_TTL_SECS: u64 = 3600;

fn default_ttl() -> u64 {
    DEFAULT_APPROVAL_TTL_SECS
}

fn default_approvals() -> u32 {
    1
}

/// One policy rule. Every condition given must hold; absent conditions match anything.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Rule name (shown in the approval request).
    pub name: String,
    /// Job kinds (`vm.create`, `deployment.managed`, …); empty = every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Host or cluster name pattern, `*` wildcards, case-insensitive.
    #[serde(default)]
    pub target: Option<String>,
    /// Size thresholds: the rule matches when any named spec field is at least the value
    /// (`gb_ram: 64`). Empty = no size condition.
    #[serde(default)]
    pub min: BTreeMap<String, f64>,
    /// The rule matches only requesters holding one of these roles; empty = anyone.
    #[serde(default)]
    pub requester_roles: Vec<Role>,
    /// Approvals needed (0 = none).
    #[serde(default = "default_approvals")]
    pub approvals: u32,
    /// Groups whose members may vote.
    #[serde(default)]
    pub groups: Vec<String>,
    /// How long the request stays open, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
}

/// The approval policy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// Why a policy file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not valid YAML for this structure.
    #[error("invalid approval policy")]
    Yaml(#[source] Box<serde_saphyr::Error>),
}

/// What a request looks like to the policy.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Job kind wire name.
    pub kind: &'a str,
    /// Host or cluster name.
    pub target: &'a str,
    /// The validated spec.
    pub spec: &'a serde_json::Map<String, serde_json::Value>,
    /// The requester's roles.
    pub roles: &'a BTreeSet<Role>,
}

/// What the policy requires of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The rule that matched.
    pub rule: String,
    /// Approvals needed (≥ 1).
    pub required: u32,
    /// Groups that may vote.
    pub groups: Vec<String>,
    /// Time to live.
    pub ttl: Duration,
}

/// `*`-wildcard match, case-insensitive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Rule {
    fn matches(&self, f: &RequestFacts<'_>) -> bool {
        let kind_ok = self.kinds.is_empty() || self.kinds.iter().any(|k| k == f.kind);
        let target_ok = self
            .target
            .as_deref()
            .is_none_or(|p| glob_match(p, f.target));
        let size_ok = self.min.is_empty()
            || self.min.iter().any(|(field, min)| {
                f.spec
                    .get(field)
                    .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
                    .is_some_and(|v| v >= *min)
            });
        let role_ok = self.requester_roles.is_empty()
            || self.requester_roles.iter().any(|r| f.roles.contains(r));
        kind_ok && target_ok && size_ok && role_ok
    }
}

impl Policy {
    /// Parses a YAML policy.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        serde_saphyr::from_str(text).map_err(|e| PolicyError::Yaml(Box::new(e)))
    }

    /// What the first matching rule requires; `None` = no approval needed.
    pub fn evaluate(&self, facts: &RequestFacts<'_>) -> Option<Requirement> {
        let rule = self.rules.iter().find(|r| r.matches(facts))?;
        (rule.approvals > 0).then(|| Requirement {
            rule: rule.name.clone(),
            required: rule.approvals,
            groups: rule.groups.clone(),
            ttl: Duration::seconds(i64::try_from(rule.ttl_secs).unwrap_or(i64::MAX / 1000)),
        })
    }
}

/// How a request was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Enough approvals.
    Approved {
        /// The approvers in vote order.
        by: Vec<Requester>,
    },
    /// Vetoed.
    Rejected {
        /// Who rejected.
        by: Requester,
        /// Why.
        reason: Option<String>,
    },
    /// Nobody decided in time.
    Expired,
}

/// The result of an accepted vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Counted; more approvals are needed.
    Counted {
        /// Approvals so far.
        granted: u32,
        /// Approvals needed.
        required: u32,
    },
    /// This vote completed the approval: publish the job now (returned exactly once).
    Approved(Approval),
    /// This vote vetoed the request.
    Rejected,
}

/// Why a vote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VoteError {
    /// The requester tried to approve their own request.
    #[error("requester cannot approve own request")]
    SelfApproval,
    /// The voter is in none of the groups.
    #[error("voter not in an approver group")]
    NotInGroup {
        /// The groups that may vote.
        groups: Vec<String>,
    },
    /// The voter already approved.
    #[error("already voted")]
    AlreadyVoted,
    /// Someone decided first.
    #[error("already decided")]
    AlreadyDecided(Decision),
}

/// One approval request and its votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    /// Who asked.
    pub requester: Requester,
    /// Approvals needed.
    pub required: u32,
    /// Groups that may vote.
    pub groups: Vec<String>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// Approvals so far, in order.
    pub granted: Vec<Requester>,
    /// The decision, once made.
    pub decision: Option<Decision>,
}

impl PendingApproval {
    /// A new open request.
    pub fn new(
        requester: Requester,
        required: u32,
        groups: Vec<String>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        PendingApproval {
            requester,
            required,
            groups,
            expires_at,
            granted: Vec::new(),
            decision: None,
        }
    }

    /// Marks the request expired when its time is up; true only on the transition.
    pub fn expire(&mut self, now: DateTime<Utc>) -> bool {
        if self.decision.is_none() && now >= self.expires_at {
            self.decision = Some(Decision::Expired);
            true
        } else {
            false
        }
    }

    /// Applies one vote. `voter_groups` are the voter's group names.
    pub fn vote(
        &mut self,
        voter: &Requester,
        voter_groups: &BTreeSet<String>,
        approve: bool,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<VoteOutcome, VoteError> {
        self.expire(now);
        if let Some(d) = &self.decision {
            return Err(VoteError::AlreadyDecided(d.clone()));
        }
        if approve && *voter == self.requester {
            return Err(VoteError::SelfApproval);
        }
        if !self.groups.iter().any(|g| voter_groups.contains(g)) {
            return Err(VoteError::NotInGroup {
                groups: self.groups.clone(),
            });
        }
        if !approve {
            self.decision = Some(Decision::Rejected {
                by: voter.clone(),
                reason,
            });
            return Ok(VoteOutcome::Rejected);
        }
        if self.granted.contains(voter) {
            return Err(VoteError::AlreadyVoted);
        }
        self.granted.push(voter.clone());
        let granted = u32::try_from(self.granted.len()).unwrap_or(u32::MAX);
        if granted >= self.required {
            self.decision = Some(Decision::Approved {
                by: self.granted.clone(),
            });
            Ok(VoteOutcome::Approved(Approval {
                approved_by: self.granted.clone(),
                at: now,
            }))
        } else {
            Ok(VoteOutcome::Counted {
                granted,
                required: self.required,
            })
        }
    }

    /// Replays a recorded approval event (state rebuild); other events are ignored.
    pub fn apply_event(&mut self, body: &EventBody) {
        match body {
            EventBody::ApprovalGranted { by, .. } if self.decision.is_none() => {
                if !self.granted.contains(by) {
                    self.granted.push(by.clone());
                }
                if u32::try_from(self.granted.len()).unwrap_or(u32::MAX) >= self.required {
                    self.decision = Some(Decision::Approved {
                        by: self.granted.clone(),
                    });
                }
            }
            EventBody::ApprovalRejected { by, reason } if self.decision.is_none() => {
                self.decision = Some(Decision::Rejected {
                    by: by.clone(),
                    reason: reason.clone(),
                });
            }
            EventBody::ApprovalExpired {} if self.decision.is_none() => {
                self.decision = Some(Decision::Expired);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::job::Platform;

    fn who(u: &str) -> Requester {
        Requester {
            platform: Platform::Console,
            user_id: u.into(),
        }
    }

    fn groups(g: &[&str]) -> BTreeSet<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn pending(required: u32) -> PendingApproval {
        PendingApproval::new(
            who("alice"),
            required,
            vec!["approvers".into()],
            t0() + Duration::seconds(60),
        )
    }

    const POLICY: &str = r#"
rules:
  - name: big-vm
    kinds: [vm.create, deployment.managed]
    min: {gb_ram: 64}
    approvals: 2
    groups: [approvers]
    ttl_secs: 600
  - name: prod
    target: "prod-*"
    approvals: 1
    groups: [approvers]
  - name: admins-free
    requester_roles: [admin]
    approvals: 0
  - name: everything-else
    approvals: 1
    groups: [approvers]
"#;

    #[test]
    fn policy_first_match_wins() {
        let p = Policy::from_yaml(POLICY).expect("valid");
        let spec: serde_json::Map<_, _> =
            serde_json::from_value(serde_json::json!({"gb_ram": 128})).unwrap_or_default();
        let small: serde_json::Map<_, _> =
            serde_json::from_value(serde_json::json!({"gb_ram": 4})).unwrap_or_default();
        let op = BTreeSet::from([Role::Operator]);
        let admin = BTreeSet::from([Role::Admin]);
        let facts = |kind, target, spec, roles| RequestFacts {
            kind,
            target,
            spec,
            roles,
        };
        let r = p
            .evaluate(&facts("vm.create", "hv01", &spec, &op))
            .expect("needs approval");
        assert_eq!((r.rule.as_str(), r.required), ("big-vm", 2));
        assert_eq!(r.ttl, Duration::seconds(600));
        let r = p
            .evaluate(&facts("vm.create", "PROD-7", &small, &op))
            .expect("prod");
        assert_eq!(r.rule, "prod");
        assert_eq!(
            p.evaluate(&facts("vm.create", "hv01", &small, &admin)),
            None
        );
        assert_eq!(
            p.evaluate(&facts("noop", "hv01", &small, &op))
                .map(|r| r.rule),
            Some("everything-else".into())
        );
        assert_eq!(
            Policy::default().evaluate(&facts("noop", "x", &small, &op)),
            None
        );
    }

    #[test]
    fn glob() {
        assert!(glob_match("prod-*", "prod-01"));
        assert!(glob_match("*", ""));
        assert!(glob_match("h*v*1", "hXXvYY1"));
        assert!(!glob_match("prod-*", "dev-01"));
    }

    #[test]
    fn self_approval_is_refused() {
        let mut p = pending(1);
        let g = groups(&["approvers"]);
        assert_eq!(
            p.vote(&who("alice"), &g, true, None, t0()),
            Err(VoteError::SelfApproval)
        );
        assert_eq!(p.decision, None);
    }

    #[test]
    fn outsiders_cannot_vote() {
        let mut p = pending(1);
        assert_eq!(
            p.vote(&who("eve"), &groups(&["ops"]), true, None, t0()),
            Err(VoteError::NotInGroup {
                groups: vec!["approvers".into()]
            })
        );
    }

    #[test]
    fn one_rejection_vetoes() {
        let mut p = pending(2);
        let g = groups(&["approvers"]);
        assert!(matches!(
            p.vote(&who("bob"), &g, true, None, t0()),
            Ok(VoteOutcome::Counted {
                granted: 1,
                required: 2
            })
        ));
        assert_eq!(
            p.vote(&who("carol"), &g, false, Some("no".into()), t0()),
            Ok(VoteOutcome::Rejected)
        );
        assert!(matches!(
            p.vote(&who("dave"), &g, true, None, t0()),
            Err(VoteError::AlreadyDecided(Decision::Rejected { by, .. })) if by == who("carol")
        ));
    }

    #[test]
    fn m_of_n_and_approved_exactly_once() {
        let mut p = pending(2);
        let g = groups(&["approvers"]);
        let mut publications = 0;
        for voter in ["bob", "bob", "carol", "dave", "carol"] {
            if let Ok(VoteOutcome::Approved(a)) = p.vote(&who(voter), &g, true, None, t0()) {
                publications += 1;
                assert_eq!(a.approved_by, vec![who("bob"), who("carol")]);
            }
        }
        assert_eq!(publications, 1);
        assert_eq!(
            p.vote(&who("dave"), &g, true, None, t0()),
            Err(VoteError::AlreadyDecided(Decision::Approved {
                by: vec![who("bob"), who("carol")]
            }))
        );
    }

    #[test]
    fn double_click_counts_once() {
        let mut p = pending(2);
        let g = groups(&["approvers"]);
        assert!(p.vote(&who("bob"), &g, true, None, t0()).is_ok());
        assert_eq!(
            p.vote(&who("bob"), &g, true, None, t0()),
            Err(VoteError::AlreadyVoted)
        );
        assert_eq!(p.granted.len(), 1);
    }

    #[test]
    fn expiry_rejects() {
        let mut p = pending(1);
        let g = groups(&["approvers"]);
        assert!(!p.expire(t0()));
        let late = t0() + Duration::seconds(61);
        assert_eq!(
            p.vote(&who("bob"), &g, true, None, late),
            Err(VoteError::AlreadyDecided(Decision::Expired))
        );
        assert!(!p.expire(late), "expires once");
    }

    #[test]
    fn replay_rebuilds_the_same_state() {
        let mut live = pending(2);
        let g = groups(&["approvers"]);
        let _ = live.vote(&who("bob"), &g, true, None, t0());
        let mut replayed = pending(2);
        replayed.apply_event(&EventBody::ApprovalGranted {
            by: who("bob"),
            granted: 1,
            required: 2,
        });
        assert_eq!(live, replayed);
        replayed.apply_event(&EventBody::ApprovalRejected {
            by: who("carol"),
            reason: None,
        });
        assert!(matches!(replayed.decision, Some(Decision::Rejected { .. })));
    }
}
