//! One reply of every kind, for checking template sets at start.

use super::*;

impl Reply {
    /// One reply of every kind, with made-up values: adapters render them all at start so a
    /// template that cannot render fails then, naming its file.
    pub fn samples() -> Vec<Reply> {
        let job = JobId(uuid::Uuid::nil());
        let short = "00000000".to_string();
        let vm = VmRow {
            host: "hv01".into(),
            name: "web01".into(),
            id: "5f1c".into(),
            state: "Running".into(),
            cpu: 2,
            memory_gb: 4,
        };
        let view = ApprovalView {
            short: short.clone(),
            rule: "rule".into(),
            required: 1,
            groups: "approvers".into(),
            expires_at: "2026-01-01T00:00:00Z".into(),
            requester: "alice".into(),
            kind: "vm.create".into(),
            target: "hv01".into(),
            fields: Map::new(),
        };
        let who = Requester {
            platform: aetherv_core::Platform::Console,
            user_id: "bob".into(),
        };
        let status = StatusView {
            short: short.clone(),
            kind: "vm.create".into(),
            target: "hv01".into(),
            state: "running".into(),
            step: Some(StepView {
                index: 1,
                total: 1,
                name: "vm.create".into(),
            }),
            queue_position: Some(1),
            percent: 0,
        };
        let finished = |outcome| Reply::JobFinished {
            job,
            short: short.clone(),
            kind: "vm.create".into(),
            target: "hv01".into(),
            outcome,
            log: Some(LogFile {
                name: "job.log".into(),
                lines: 1,
                content: "x\n".into(),
            }),
        };
        let decided = |decision, cancelled| Reply::ApprovalDecided {
            job,
            view: view.clone(),
            decision,
            cancelled,
        };
        let user = "alice".to_string();
        vec![
            Reply::Help {
                user: user.clone(),
                commands: vec!["help".into()],
            },
            Reply::Refused {
                user: user.clone(),
                command: "deploy".into(),
                role: "operator".into(),
            },
            Reply::ParseError {
                user: user.clone(),
                message: "m".into(),
                usage: Some("help".into()),
            },
            Reply::FormErrors {
                user: user.clone(),
                form: "vm".into(),
                errors: vec![FieldErrorView {
                    field: "vm_name".into(),
                    code: "required".into(),
                    message: "m".into(),
                }],
            },
            Reply::Notice {
                user: user.clone(),
                message: "m".into(),
            },
            Reply::Listing(Listing::Vms {
                host: None,
                vms: vec![vm.clone()],
            }),
            Reply::Guided {
                user: user.clone(),
                question: Question::Intro { title: "T".into() },
            },
            Reply::Guided {
                user: user.clone(),
                question: Question::Field {
                    label: "L".into(),
                    id: "vm_name".into(),
                    required: true,
                    help: "h".into(),
                    default: Some("d".into()),
                    choices: vec!["a".into()],
                    secret: false,
                },
            },
            Reply::Guided {
                user: user.clone(),
                question: Question::Set { label: "L".into() },
            },
            Reply::Guided {
                user: user.clone(),
                question: Question::Required { label: "L".into() },
            },
            Reply::Guided {
                user: user.clone(),
                question: Question::Cancelled,
            },
            Reply::Listing(Listing::Vm(VmView {
                row: vm,
                disks: vec![crate::state::DiskInfo {
                    id: "d1".into(),
                    path: "web01.vhdx".into(),
                    size_gb: Some(40),
                    location: Some((0, 0)),
                }],
                nics: vec![crate::state::NicInfo {
                    id: "n1".into(),
                    name: "nic0".into(),
                    network: "prod".into(),
                    switch: "vSwitch-Prod".into(),
                    mac: "00155D000001".into(),
                    addresses: vec!["10.0.0.7".into()],
                }],
                addresses: vec!["10.0.0.7".into()],
                inventoried: true,
            })),
            Reply::Listing(Listing::Hosts(vec![HostRow {
                name: "hv01".into(),
                status: "up".into(),
                vms: 1,
                running: Some(short.clone()),
                queued: 0,
            }])),
            Reply::Listing(Listing::Jobs {
                jobs: vec![JobRow {
                    short: short.clone(),
                    kind: "vm.create".into(),
                    target: "hv01".into(),
                    state: "queued".into(),
                    requester: user.clone(),
                    created: "2026-05-01 14:03Z".into(),
                }],
                more: 3,
            }),
            Reply::JobOpened(JobView {
                job,
                short: short.clone(),
                kind: "vm.create".into(),
                target: "hv01".into(),
                requester: user.clone(),
            }),
            Reply::ApprovalRequested {
                job,
                view: view.clone(),
                restored: false,
            },
            Reply::VoteCounted {
                job,
                short: short.clone(),
                voter: "bob".into(),
                granted: 1,
                required: 2,
            },
            Reply::VoteRefused {
                job: Some(job),
                user,
                message: "m".into(),
            },
            decided(
                Decision::Approved {
                    by: vec![who.clone()],
                },
                false,
            ),
            decided(
                Decision::Rejected {
                    by: who.clone(),
                    reason: Some("r".into()),
                },
                false,
            ),
            decided(Decision::Expired, false),
            decided(
                Decision::Rejected {
                    by: who,
                    reason: Some("cancelled".into()),
                },
                true,
            ),
            Reply::ThreadUpdate(ThreadMessage {
                job,
                msg: MessageRef::Status,
                edit: false,
                content: ThreadContent::Status(status),
            }),
            Reply::ThreadUpdate(ThreadMessage {
                job,
                msg: MessageRef::Log(0),
                edit: false,
                content: ThreadContent::Log {
                    part: 1,
                    lines: vec!["line".into()],
                },
            }),
            finished(Outcome::Succeeded {
                resources: Map::new(),
            }),
            finished(Outcome::Failed {
                step: Some("vm.create".into()),
                code: "c".into(),
                message: "m".into(),
            }),
            finished(Outcome::Cancelled {
                by: Some("alice".into()),
            }),
        ]
    }
}
