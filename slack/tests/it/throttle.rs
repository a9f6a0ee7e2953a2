//! Rate limits and long output: 429 `Retry-After` is obeyed without losing messages; a job
//! logging 10,000 lines stays within Slack's message limits and edits each message at most
//! once per second, and the whole log is uploaded.

use super::*;
use aetherv_broker::StreamOffset;
use aetherv_core::{Event, EventBody, JobId, LogLine, LogStream};
use aetherv_slack::blocks::check_message;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

fn message_part(body: &Value) -> Value {
    let mut m = body.clone();
    if let Some(o) = m.as_object_mut() {
        o.retain(|k, _| k == "text" || k == "blocks");
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_delays_the_next_call_and_loses_nothing() {
    let b = broker();
    let bot = socket_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    fake.rate_limit("chat.postMessage", &[2]);
    for cmd in ["hosts", "help", "vm list"] {
        fake.slash("U0EVE", "C0OPS", cmd).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while fake.calls_of("chat.postMessage").len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replies lost: {:#?}",
            fake.calls()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let posts: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "chat.postMessage")
        .collect();
    assert!(posts[0].limited, "the first call was answered 429");
    assert!(
        posts[1].at - posts[0].at >= Duration::from_secs(2),
        "the next call waited Retry-After: {:?}",
        posts[1].at - posts[0].at
    );
    assert!(posts[1].at - posts[0].at < Duration::from_secs(4));
    // The refused call was retried with the same body, and every reply arrived, in order.
    assert_eq!(posts[0].body, posts[1].body);
    let texts: Vec<String> = posts[1..]
        .iter()
        .map(|c| c.body["text"].to_string())
        .collect();
    assert_eq!(texts.len(), 3);
    assert!(texts[0].contains("hv01"), "{texts:?}");
    assert!(
        texts[1].contains("help") || texts[1].contains("vm list"),
        "{texts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_log_lines_stay_within_limits_and_edit_rates() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let bot = socket_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    fake.slash(
        "U0ALICE",
        "C0OPS",
        "deploy vm vm_name=big01 target_host=hv01",
    )
    .await;
    // Find the job as a worker would see it: from the event stream.
    let mut events = b.replay_events(StreamOffset::First).await.expect("stream");
    let job: JobId = loop {
        let (_, ev) = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("job queued")
            .expect("stream open");
        if matches!(ev.body, EventBody::JobQueued { .. }) {
            break ev.job_id.expect("job id");
        }
    };
    let mut seq = 0;
    let mut emit = |body: EventBody| {
        seq += 1;
        Event::for_job(job, seq, body)
    };
    b.publish_event(&emit(EventBody::JobStarted {
        host: "hv01".into(),
        worker: "w1".into(),
        attempt: 1,
    }))
    .await
    .expect("publish");
    for batch in 0..100 {
        let lines = (0..100)
            .map(|i| LogLine {
                stream: LogStream::Stdout,
                text: format!("line {:05} <of> the & job", batch * 100 + i),
            })
            .collect();
        b.publish_event(&emit(EventBody::JobLog { lines }))
            .await
            .expect("publish");
        if batch % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    b.publish_event(&emit(EventBody::JobSucceeded {
        result: json!({"vm_id": "5f1c0000-0000-4000-8000-000000000001"}),
    }))
    .await
    .expect("publish");
    let upload = fake
        .wait_for(
            "files.completeUploadExternal",
            Duration::from_secs(60),
            |_| true,
        )
        .await;
    let file = upload.body["files"][0]["id"]
        .as_str()
        .expect("file id")
        .to_string();
    let log = String::from_utf8_lossy(&fake.uploads()[&file]).to_string();
    assert_eq!(log.lines().count(), 10_000);
    assert!(log.contains("line 09999 <of> the & job"));
    // Let the last throttled edits go out.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut last_edit: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut final_text: HashMap<String, String> = HashMap::new();
    let mut log_msgs: Vec<String> = Vec::new();
    for c in fake.calls().into_iter().filter(|c| !c.limited) {
        if c.method != "chat.postMessage" && c.method != "chat.update" {
            continue;
        }
        let m = message_part(&c.body);
        check_message(&m).unwrap_or_else(|e| panic!("{e}: {m}"));
        let block = &m["blocks"][0];
        let is_log = block["type"] == "rich_text";
        let text = if is_log {
            block["elements"][0]["elements"][0]["text"].as_str()
        } else {
            block["text"]["text"].as_str()
        }
        .unwrap_or_default()
        .to_string();
        if c.method == "chat.update" {
            if let Some(prev) = last_edit.insert(c.ts.clone(), c.at) {
                assert!(
                    c.at - prev >= Duration::from_millis(995),
                    "{} edited twice within a second",
                    c.ts
                );
            }
        } else if is_log {
            log_msgs.push(c.ts.clone());
        }
        final_text.insert(c.ts.clone(), text);
    }
    assert!(log_msgs.len() > 50, "the log continued in new messages");
    let mut shown = BTreeSet::new();
    for ts in &log_msgs {
        for l in final_text[ts].lines() {
            if let Some(n) = l.strip_prefix("line ") {
                assert!(
                    l.ends_with("<of> the & job"),
                    "raw text in preformatted: {l}"
                );
                shown.insert(n.chars().take(5).collect::<String>());
            }
        }
    }
    assert_eq!(shown.len(), 10_000, "every line reached the live log");
}
