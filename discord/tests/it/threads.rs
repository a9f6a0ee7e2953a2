//! A running job's thread is kept from archiving: started with the longest auto-archive
//! duration, reopened (`PATCH /channels/{thread}` `{"archived": false}`) while its job runs
//! quietly, not after it ended, and an edit refused because the thread archived (50083)
//! reopens it and is sent again.

use super::*;
use aetherv_broker::StreamOffset;
use aetherv_core::contract::event::{LogLine, LogStream};
use aetherv_core::{Event, EventBody, JobId};
use serde_json::json;

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

fn keepalives(b: &Bot, thread: &str) -> Vec<fake::Call> {
    b.fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "PATCH" && c.path == format!("/channels/{thread}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_jobs_thread_is_kept_open_and_let_go_when_the_job_ends() {
    let br = broker();
    br.declare_host("hv01").await.expect("declare");
    let free = Policy::from_yaml("rules:\n  - name: free\n    approvals: 0\n").expect("policy");
    let every = Duration::from_millis(400);
    let b = bot_with(&br, free, ThreadKeeping { every }).await;
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
        &[&[("vm_name", "web40")]],
        "tok-keep",
    )
    .await;
    let job = queued_job(&br).await;
    let start = b
        .fake
        .wait_for(Duration::from_secs(5), |c| c.path.ends_with("/threads"))
        .await;
    // Started with the longest auto-archive duration (a week).
    assert_eq!(start.body["auto_archive_duration"], json!(10080));
    let thread = start.answer["id"].as_str().expect("thread id").to_string();
    // An archived thread refuses edits of its messages: the first one is refused so.
    b.fake.script(
        "PATCH",
        &format!("/channels/{thread}/messages/"),
        vec![(
            400,
            json!({ "message": "Thread is archived", "code": 50083 }),
        )],
    );
    let started = EventBody::JobStarted {
        host: "hv01".into(),
        worker: "w1".into(),
        attempt: 1,
    };
    br.publish_event(&Event::for_job(job, 1, started))
        .await
        .expect("publish");
    // The refused edit reopened the thread and was sent again.
    let refused = b
        .fake
        .wait_for(Duration::from_secs(5), |c| c.status == 400)
        .await;
    let resent = b
        .fake
        .wait_for(Duration::from_secs(5), |c| {
            c.method == "PATCH" && c.path == refused.path && c.status == 200
        })
        .await;
    let reopen = keepalives(&b, &thread)
        .into_iter()
        .find(|c| c.at >= refused.at && c.at <= resent.at)
        .expect("the thread reopened between the refusal and the retry");
    assert_eq!(reopen.body, json!({ "archived": false }));
    // The job runs quietly: the thread gets keep-alives, about one per interval.
    tokio::time::sleep(every * 4).await;
    let kept = keepalives(&b, &thread).len();
    assert!((2..=7).contains(&kept), "{kept} keep-alives");
    // The job logs and ends.
    let lines = vec![LogLine {
        stream: LogStream::Stdout,
        text: "still working".into(),
    }];
    br.publish_event(&Event::for_job(job, 2, EventBody::JobLog { lines }))
        .await
        .expect("publish");
    let done = EventBody::JobSucceeded {
        result: json!({ "vm_id": "11111111-2222-3333-4444-555555555555" }),
    };
    br.publish_event(&Event::for_job(job, 3, done))
        .await
        .expect("publish");
    b.fake
        .wait_for(Duration::from_secs(10), |c| {
            c.content_type.starts_with("multipart/")
        })
        .await;
    // Ended: the thread is let go.
    let after = keepalives(&b, &thread).len();
    tokio::time::sleep(every * 3).await;
    assert_eq!(
        keepalives(&b, &thread).len(),
        after,
        "no keep-alive after the end"
    );
}
