//! Approval rules through the engine: self-approval, veto, M-of-N, expiry, double clicks,
//! exactly-once publication, roles, and a bot killed mid-approval.

use super::*;
use aetherv_bot::state::Phase;
use aetherv_broker::StreamOffset;
use aetherv_core::secrets;
use aetherv_core::{Event, EventBody, JobEnvelope, JobId, JobKind, Requester, Target};
use serde_json::json;

const DEPLOY: &str = "deploy vm vm_name=web01 target_host=hv01 gb_ram=2 cpu_cores=1";

pub(super) async fn ready(b: &Broker) -> u32 {
    b.queue_depth("hv01").await.expect("depth").ready
}

async fn setup(n: u32, ttl: u64) -> (Broker, Engine, String) {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let mut e = engine(&b, policy(n, ttl), &["hv01"]);
    let out = say(&mut e, "alice", DEPLOY).await;
    assert!(out[0].starts_with("Approval needed for job "), "{out:?}");
    let short = out[0]["Approval needed for job ".len()..][..8].to_string();
    (b, e, short)
}

#[tokio::test]
async fn self_approval_is_refused_and_nothing_is_published() {
    let (b, mut e, short) = setup(1, 3600).await;
    let out = say(&mut e, "alice", &format!("approve {short}")).await;
    assert_eq!(out, ["alice: you cannot approve your own request"]);
    assert_eq!(ready(&b).await, 0);
}

#[tokio::test]
async fn approval_publishes_the_job_once_and_later_clicks_learn_who_decided() {
    let (b, mut e, short) = setup(1, 3600).await;
    let out = say(&mut e, "bob", "approve").await;
    assert_eq!(
        out[0],
        format!("Job {short} approved by bob; published to hv01.")
    );
    assert!(out[1].starts_with(&format!(
        "[{short}] Job {short} · vm.create on hv01 · queued"
    )));
    assert_eq!(ready(&b).await, 1);
    let out = say(&mut e, "carol", &format!("approve {short}")).await;
    assert_eq!(out, ["carol: already approved by bob"]);
    let out = say(&mut e, "carol", &format!("reject {short}")).await;
    assert_eq!(out, ["carol: already approved by bob"]);
    assert_eq!(ready(&b).await, 1, "published exactly once");
}

#[tokio::test]
async fn m_of_n_with_double_click() {
    let (b, mut e, short) = setup(2, 3600).await;
    assert_eq!(
        say(&mut e, "bob", &format!("approve {short}")).await,
        [format!("bob approved job {short} (1 of 2).")]
    );
    assert_eq!(
        say(&mut e, "bob", &format!("approve {short}")).await,
        ["bob: you already approved this request"]
    );
    assert_eq!(ready(&b).await, 0);
    let out = say(&mut e, "carol", &format!("approve {short}")).await;
    assert_eq!(
        out[0],
        format!("Job {short} approved by bob, carol; published to hv01.")
    );
    assert_eq!(ready(&b).await, 1);
}

#[tokio::test]
async fn one_reject_vetoes() {
    let (b, mut e, short) = setup(2, 3600).await;
    say(&mut e, "bob", &format!("approve {short}")).await;
    assert_eq!(
        say(&mut e, "dave", &format!("reject {short} too big")).await,
        [format!("Job {short} rejected by dave: too big.")]
    );
    assert_eq!(
        say(&mut e, "carol", &format!("approve {short}")).await,
        ["carol: already rejected by dave"]
    );
    assert_eq!(ready(&b).await, 0);
}

#[tokio::test]
async fn expiry_rejects() {
    let (b, mut e, short) = setup(1, 0).await;
    let out = e.tick(tokio::time::Instant::now()).await.expect("tick");
    let texts = texts(&out);
    assert_eq!(
        texts,
        [format!(
            "Approval for job {short} expired; the request is rejected."
        )]
    );
    assert_eq!(
        say(&mut e, "bob", &format!("approve {short}")).await,
        ["bob: the request has expired"]
    );
    assert_eq!(ready(&b).await, 0);
}

#[tokio::test]
async fn roles_are_checked_and_refusals_name_the_role() {
    let (_b, mut e, short) = setup(1, 3600).await;
    assert_eq!(
        say(&mut e, "eve", DEPLOY).await,
        ["eve: `deploy` needs the operator role."]
    );
    assert_eq!(
        say(&mut e, "eve", &format!("approve {short}")).await,
        ["eve: `approve` needs the approver role."]
    );
    assert_eq!(
        say(&mut e, "mallory", "vm list").await,
        ["mallory: `vm list` needs the reader role."]
    );
    let help = say(&mut e, "eve", "help").await;
    assert!(
        help[0].contains("vm list") && !help[0].contains("deploy"),
        "{help:?}"
    );
    let errs = say(
        &mut e,
        "alice",
        "deploy vm vm_name=x target_host=hv09 cpu_cores=0",
    )
    .await;
    assert!(
        errs[0].contains("\n  cpu_cores: ") && errs[0].contains("\n  target_host: "),
        "{errs:?}"
    );
}

#[tokio::test]
async fn a_bot_killed_mid_approval_resumes_from_the_event_stream() {
    let (b, mut e1, short) = setup(2, 3600).await;
    say(&mut e1, "bob", &format!("approve {short}")).await;
    drop(e1);
    let mut e2 = engine(&b, policy(2, 3600), &["hv01"]);
    let mut events = replay(&b).await;
    let out = pump(&mut e2, &mut events, Duration::from_secs(10), |e| {
        e.jobs()
            .iter()
            .any(|j| !j.restored && j.phase == Phase::AwaitingApproval)
    })
    .await;
    let texts = texts(&out);
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with(&format!("Approval needed for job {short}"))),
        "{texts:?}"
    );
    assert_eq!(
        say(&mut e2, "bob", &format!("approve {short}")).await,
        ["bob: you already approved this request"]
    );
    let out = say(&mut e2, "carol", &format!("approve {short}")).await;
    assert_eq!(
        out[0],
        format!("Job {short} approved by bob, carol; published to hv01.")
    );
    assert_eq!(ready(&b).await, 1);
}

#[tokio::test]
async fn an_approval_recorded_but_not_published_is_published_once_after_restart() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let alice = Requester {
        platform: Platform::Console,
        user_id: "alice".into(),
    };
    let bob = Requester {
        platform: Platform::Console,
        user_id: "bob".into(),
    };
    let env = JobEnvelope {
        v: 1,
        job_id: JobId::new(),
        kind: JobKind::Noop,
        target: Target::Host("hv01".into()),
        spec: Default::default(),
        secrets: None,
        requested_by: alice,
        origin: None,
        created_at: chrono::Utc::now(),
        approval: None,
    };
    let job = env.job_id;
    // What a bot that crashed right after the deciding vote leaves behind.
    for body in [
        EventBody::ApprovalRequested {
            required: 1,
            groups: vec!["approvers".into()],
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            request: serde_json::json!({"rule": "all", "envelope": env}),
        },
        EventBody::ApprovalGranted {
            by: bob,
            granted: 1,
            required: 1,
        },
    ] {
        b.publish_event(&Event::for_job(job, 0, body))
            .await
            .expect("event");
    }
    for _ in 0..2 {
        let mut e = engine(&b, policy(1, 3600), &["hv01"]);
        let mut events = replay(&b).await;
        pump(&mut e, &mut events, Duration::from_secs(10), |e| {
            e.job(job).is_some_and(|j| !j.restored && j.queued)
        })
        .await;
    }
    assert_eq!(
        ready(&b).await,
        1,
        "published exactly once across two restarts"
    );
}

#[tokio::test]
async fn a_cancelled_request_cannot_be_approved() {
    let (b, mut e, short) = setup(1, 3600).await;
    assert_eq!(
        say(&mut e, "bob", &format!("cancel {short}")).await,
        ["bob: `cancel` needs the operator role."]
    );
    assert_eq!(
        say(&mut e, "alice", &format!("cancel {short}")).await,
        [format!("Job {short} cancelled by alice.")]
    );
    assert_eq!(
        say(&mut e, "bob", &format!("approve {short}")).await,
        [format!("bob: job {short} was cancelled by its requester")]
    );
    // The same after a restart.
    let mut e2 = engine(&b, policy(1, 3600), &["hv01"]);
    let mut events = replay(&b).await;
    pump(&mut e2, &mut events, Duration::from_secs(10), |e| {
        e.jobs().iter().any(|j| j.phase == Phase::Cancelled)
    })
    .await;
    assert_eq!(
        say(&mut e2, "bob", &format!("approve {short}")).await,
        [format!("bob: job {short} was cancelled by its requester")]
    );
    assert_eq!(ready(&b).await, 0);
}

/// The whole approval conversation as the console shows it (ids and times normalised).
#[tokio::test]
async fn approval_conversation_transcript() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let mut e = engine(&b, policy(2, 3600), &["hv01"]);
    let mut transcript = String::new();
    for (user, line) in [
        (
            "alice",
            "deploy vm vm_name=web01 target_host=hv01 gb_ram=2 cpu_cores=1",
        ),
        ("alice", "approve"),
        ("eve", "approve"),
        ("bob", "approve"),
        ("bob", "approve"),
        ("carol", "approve"),
        ("dave", "reject {job} too late"),
        ("eve", "jobs"),
        ("eve", "vm show web01"),
        ("eve", "frobnicate"),
        ("eve", "disk add web01 lots"),
    ] {
        let short = e.jobs().first().map(|j| j.view.short.clone());
        let line = line.replace("{job}", short.as_deref().unwrap_or_default());
        transcript.push_str(&format!("{user}> {line}\n"));
        for t in say(&mut e, user, &line).await {
            transcript.push_str(&t);
            transcript.push('\n');
        }
    }
    let job = e.jobs().first().expect("job").view.clone();
    let short = job.short;
    let expires = e.approval_view(job.job).expect("approval").expires_at;
    let transcript = transcript
        .replace(&short, "<job>")
        .replace(&expires, "<expires>");
    insta::assert_snapshot!(mask_times(&transcript));
}

/// `jobs` rows' request times (`2026-05-01 14:03Z`) as `<time>`.
fn mask_times(s: &str) -> String {
    const SHAPE: &[u8] = b"dddd-dd-dd dd:ddZ";
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let fits = b.len() - i >= SHAPE.len()
            && SHAPE.iter().zip(&b[i..]).all(|(want, got)| match want {
                b'd' => got.is_ascii_digit(),
                w => w == got,
            });
        if fits {
            out.push_str("<time>");
            i += SHAPE.len();
        } else {
            let c = s[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

pub(super) const MANAGED: &str =
    "deploy managed vm_name=app01 target_host=hv01 guest_la_uid=admin \
    guest_la_pw=Sup3rSecret! network=prod disk_size_gb=40";

/// Every event published so far, as JSON text.
async fn all_events(b: &Broker) -> String {
    let mut s = b.replay_events(StreamOffset::First).await.expect("replay");
    let mut out = String::new();
    while let Ok(Some((_, ev))) = tokio::time::timeout(Duration::from_millis(200), s.next()).await {
        out.push_str(&String::from_utf8_lossy(&ev.to_vec()));
    }
    out
}

/// The job waiting in hv01's queue.
pub(super) async fn queued_job(b: &Broker) -> JobEnvelope {
    let mut c = b.consume_jobs("hv01", "inspect").await.expect("consume");
    let d = tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .expect("a job in time")
        .expect("a job");
    d.envelope
}

#[tokio::test]
async fn secrets_are_sealed_for_the_workers_and_never_shown_or_recorded() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    // Without a worker recipient, the request is refused (and the value not echoed).
    let mut e = engine(&b, policy(1, 3600), &["hv01"]);
    let out = say(&mut e, "alice", MANAGED).await.join("\n");
    assert!(
        out.contains("secret fields (guest_la_pw) cannot be sent: no worker encryption key"),
        "{out}"
    );
    assert!(!out.contains("Sup3rSecret!"));
    // With a recipient: redacted in chat, absent from events, sealed in the job message.
    let worker = secrets::generate_identity();
    let mut e = engine_with(&b, policy(1, 3600), &["hv01"], vec![worker.to_public()]);
    let mut chat = say(&mut e, "alice", MANAGED).await.join("\n");
    assert!(chat.contains("guest_la_pw = ••••••"), "{chat}");
    chat.push_str(&say(&mut e, "bob", "approve").await.join("\n"));
    assert!(chat.contains("approved by bob"), "{chat}");
    assert!(!chat.contains("Sup3rSecret!"));
    let events = all_events(&b).await;
    assert!(events.contains("approval.requested") && events.contains("job.queued"));
    assert!(
        !events.contains("Sup3rSecret!"),
        "a secret reached the event stream"
    );
    assert_eq!(ready(&b).await, 1);
    let job = queued_job(&b).await;
    let wire = String::from_utf8(job.to_vec()).expect("utf-8");
    assert!(
        !wire.contains("Sup3rSecret!"),
        "plaintext in the job message"
    );
    assert!(!job.spec.contains_key("guest_la_pw"), "{:?}", job.spec);
    let opened = secrets::open(job.secrets.as_deref().expect("sealed"), &worker).expect("opens");
    assert_eq!(opened.get("guest_la_pw"), Some(&json!("Sup3rSecret!")));
    assert!(secrets::open(
        job.secrets.as_deref().expect("sealed"),
        &secrets::generate_identity()
    )
    .is_err());
}

#[tokio::test]
async fn a_request_awaiting_approval_survives_a_bot_restart_with_its_sealed_secrets() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let worker = secrets::generate_identity();
    let mut e1 = engine_with(&b, policy(1, 3600), &["hv01"], vec![worker.to_public()]);
    say(&mut e1, "alice", MANAGED).await;
    drop(e1);
    let mut e2 = engine_with(&b, policy(1, 3600), &["hv01"], vec![worker.to_public()]);
    let mut events = replay(&b).await;
    pump(&mut e2, &mut events, Duration::from_secs(10), |e| {
        e.jobs().iter().any(|j| !j.restored)
    })
    .await;
    let out = say(&mut e2, "bob", "approve").await.join("\n");
    assert!(out.contains("approved by bob"), "{out}");
    assert_eq!(ready(&b).await, 1, "the approved job was not published");
    let job = queued_job(&b).await;
    let opened = secrets::open(job.secrets.as_deref().expect("sealed"), &worker).expect("opens");
    assert_eq!(opened.get("guest_la_pw"), Some(&json!("Sup3rSecret!")));
}

#[tokio::test]
async fn queued_jobs_are_cancelled_through_the_workers_by_the_requester_or_an_admin() {
    let (b, mut e, short) = setup(1, 3600).await;
    say(&mut e, "bob", "approve").await;
    assert_eq!(ready(&b).await, 1);
    let out = say(&mut e, "bob", &format!("cancel {short}")).await;
    assert_eq!(out, ["bob: `cancel` needs the operator role."]);
    let out = say(&mut e, "frank", &format!("cancel {short}")).await;
    assert_eq!(
        out,
        ["frank: only the requester or an admin can cancel a job"]
    );
    assert!(!all_events(&b).await.contains("job.cancel_requested"));
    let out = say(&mut e, "alice", &format!("cancel {short}")).await;
    assert_eq!(
        out,
        [format!(
            "alice: cancelling job {short}: it is dropped when its host slot reaches it"
        )]
    );
    let out = say(&mut e, "root", &format!("cancel {short}")).await;
    assert!(out[0].starts_with("root: cancelling job"), "{out:?}");
    let events = all_events(&b).await;
    assert_eq!(
        events.matches("job.cancel_requested").count(),
        2,
        "{events}"
    );
    assert!(events.contains(r#""user_id":"alice""#), "{events}");
    // The job stays queued until a worker confirms; then it is final and not cancellable.
    let job = e.find_job(&short).expect("job");
    e.handle_event(
        &Event::for_job(job, 0, EventBody::JobCancelled { by: None }),
        tokio::time::Instant::now(),
    );
    let out = say(&mut e, "alice", &format!("cancel {short}")).await;
    assert_eq!(
        out,
        [format!(
            "alice: job {short} is cancelled; there is nothing to cancel"
        )]
    );
}
