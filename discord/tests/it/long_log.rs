//! A job with 10,000 log lines: every message the bot sends stays within Discord's limits,
//! every line reaches the thread (live messages continued in new ones) and the attached log,
//! edits wait for the bucket reset the fake's `X-RateLimit-*` headers announce (nothing else
//! paces them) and the ones held back meanwhile collapse into the newest, and a 429 delays a
//! write without losing it.

use super::*;
use aetherv_broker::StreamOffset;
use aetherv_core::contract::event::{LogLine, LogStream};
use aetherv_core::{Event, EventBody, JobId};
use serde_json::json;
use std::collections::BTreeSet;

const LINES: usize = 10_000;
/// Lines per log event.
const CHUNK: usize = 10;

async fn queued_job(br: &Broker) -> JobId {
    let mut events = br.replay_events(StreamOffset::First).await.expect("stream");
    loop {
        let (_, ev) = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event in time")
            .expect("an event");
        if let (Some(job), EventBody::JobQueued { .. }) = (ev.job_id, &ev.body) {
            return job;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_log_lines_fit_discord_follow_the_rate_limit_headers_and_lose_nothing() {
    let br = broker();
    br.declare_host("hv01").await.expect("declare");
    let free = Policy::from_yaml("rules:\n  - name: free\n    approvals: 0\n").expect("policy");
    let b = bot(&br, free).await;
    // The first thread root post is refused with a 429; the first edits empty their bucket.
    b.fake.script_with_headers(
        "POST",
        &format!("/channels/{OPS}/messages"),
        vec![(
            429,
            json!({ "message": "You are being rate limited.", "retry_after": 0.4, "global": false }),
            vec![("retry-after", "1".into())],
        )],
    );
    // Every message edit empties its bucket for 250 ms (as Discord's headers may say); the
    // first edit is refused with a 429.
    let reset_after = Duration::from_millis(250);
    b.fake.limit_edits(reset_after.as_secs_f64());
    b.fake.script(
        "PATCH",
        "/channels/",
        vec![(
            429,
            json!({ "message": "You are being rate limited.", "retry_after": 0.5, "global": false }),
        )],
    );
    // The first posts in the thread (ids 9000…) empty their bucket too.
    let empty = |id: String| {
        (
            200,
            json!({ "id": id }),
            vec![
                ("x-ratelimit-limit", "5".to_string()),
                ("x-ratelimit-remaining", "0".to_string()),
                ("x-ratelimit-reset-after", "0.300".to_string()),
                ("x-ratelimit-bucket", "thread".to_string()),
            ],
        )
    };
    let scripted = 5;
    b.fake.script_with_headers(
        "POST",
        "/channels/9000",
        (0..scripted).map(|i| empty(format!("8000{i}"))).collect(),
    );
    let options = json!([
        { "name": "gb_ram", "type": 4, "value": 4 },
        { "name": "cpu_cores", "type": 4, "value": 2 },
        { "name": "target_host", "type": 3, "value": "hv01" }
    ]);
    forms::deploy(
        &b,
        ALICE,
        "vm",
        &options,
        &[&[("vm_name", "web30")]],
        "tok-log",
    )
    .await;
    let job = queued_job(&br).await;
    let started = EventBody::JobStarted {
        host: "hv01".into(),
        worker: "w1".into(),
        attempt: 1,
    };
    br.publish_event(&Event::for_job(job, 1, started))
        .await
        .expect("publish");
    // Small events, as an agent's output streams: each one changes the live message.
    for (seq, chunk) in (0..LINES).collect::<Vec<_>>().chunks(CHUNK).enumerate() {
        let lines = chunk
            .iter()
            .map(|i| LogLine {
                stream: LogStream::Stdout,
                text: format!("line {i:05} of the agent's output"),
            })
            .collect();
        let ev = Event::for_job(job, seq as u64 + 2, EventBody::JobLog { lines });
        br.publish_event(&ev).await.expect("publish");
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    let done = EventBody::JobSucceeded {
        result: json!({ "vm_id": "11111111-2222-3333-4444-555555555555" }),
    };
    br.publish_event(&Event::for_job(job, (LINES / CHUNK) as u64 + 10, done))
        .await
        .expect("publish");
    let upload = b
        .fake
        .wait_for(Duration::from_secs(60), |c| {
            c.content_type.starts_with("multipart/")
        })
        .await;
    let file = String::from_utf8_lossy(&upload.raw).to_string();
    let calls = b.fake.calls();
    // The 429 was waited out and the root posted once after it.
    let roots: Vec<_> = calls
        .iter()
        .filter(|c| c.method == "POST" && c.path == format!("/channels/{OPS}/messages"))
        .collect();
    assert_eq!(roots.len(), 2, "the refused post and its retry");
    assert!(roots[1].at.duration_since(roots[0].at) >= Duration::from_millis(400));
    // After a call that emptied its bucket, the next one in it waits for the reset: every
    // edit (the first after its 429's `Retry-After`), and the first posts in the thread.
    let edits: Vec<_> = calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.starts_with("/channels/"))
        .collect();
    assert_eq!(edits[0].status, 429);
    assert!(edits[1].at.duration_since(edits[0].at) >= Duration::from_millis(950));
    for w in edits.windows(2).skip(1) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(
            gap >= reset_after - Duration::from_millis(10),
            "an edit after {gap:?}"
        );
    }
    let posts: Vec<_> = calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.starts_with("/channels/9000"))
        .collect();
    assert!(posts.len() >= 2, "{} posts in the thread", posts.len());
    for w in posts.windows(2).take(scripted) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(gap >= Duration::from_millis(290), "a post after {gap:?}");
    }
    // Each of the 1,000 log events changed the live message (the engine does not pace
    // edits): what the bucket held back collapsed in the queue (posts still waiting took
    // their edits), into far fewer edits.
    eprintln!(
        "{LINES} lines in {} events: {} posts in the thread, {} edits",
        LINES / CHUNK,
        posts.len(),
        edits.len()
    );
    // (The pace itself is the gaps above; this bound holds however slow the machine is.)
    assert!(edits.len() < LINES / CHUNK / 4, "{} edits", edits.len());
    // Every message within Discord's limits, and every line in the thread's messages (their
    // last version) and in the attached file.
    let mut last: std::collections::HashMap<String, String> = Default::default();
    for c in &calls {
        if let Some(text) = c.body["content"].as_str() {
            assert!(
                text.chars().count() <= 2000,
                "{} characters",
                text.chars().count()
            );
            let key = match c.method.as_str() {
                "PATCH" => c.path.clone(),
                _ => format!("{}/{}", c.path, c.answer["id"].as_str().unwrap_or_default()),
            };
            last.insert(key, text.to_string());
        }
    }
    let seen: BTreeSet<usize> = last
        .values()
        .flat_map(|t| t.lines())
        .filter_map(|l| {
            l.trim()
                .strip_prefix("line ")
                .and_then(|r| r.get(..5)?.parse().ok())
        })
        .collect();
    let missing: Vec<usize> = (0..LINES).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} lines missing from the thread, from {:?} to {:?}",
        missing.len(),
        missing.first(),
        missing.last()
    );
    for i in [0, 1, 4999, 9999] {
        assert!(
            file.contains(&format!("line {i:05} of")),
            "line {i} not in the file"
        );
    }
}
