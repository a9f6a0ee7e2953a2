//! The broker contract: every test here runs against both the in-process broker and RabbitMQ
//! (see the `contract_suite!` invocation in `main.rs`). Each gets a fresh broker on a unique
//! topology.

use crate::support::{ack_next, event, job, next_job, next_within, two_jobs_queued};
use aetherv_broker::{Broker, BrokerError, PublishError, StreamOffset};
use aetherv_core::Target;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

pub async fn declare_host_is_idempotent(b: Broker) {
    b.declare_host("hv01").await.unwrap();
    b.declare_host("hv01").await.unwrap();
    b.declare_host("HV01").await.unwrap();
    assert!(matches!(
        b.declare_host("not a host").await,
        Err(BrokerError::InvalidHost(_))
    ));
    let j = job("hv01");
    b.publish_job(&j).await.unwrap();
    let mut c = b.consume_jobs("hv01", "w1").await.unwrap();
    let d = next_job(&mut c).await;
    assert_eq!(d.envelope, j, "declared twice, still exactly one queue");
    d.ack().await.unwrap();
    assert!(next_within(&mut c, 300).await.is_none());
}

pub async fn publish_consume_ack(b: Broker) {
    b.declare_host("hv01").await.unwrap();
    let mut c = b.consume_jobs("hv01", "w1").await.unwrap();
    assert!(c.queue().ends_with(".host.hv01"));
    let j = job("HV01"); // the routing key is lower-cased by the target
    b.publish_job(&j).await.unwrap();
    let d = next_job(&mut c).await;
    assert_eq!(d.envelope, j);
    assert!(!d.redelivered);
    assert_eq!(d.delivery_count, 0);
    assert_eq!(d.attempt(), 1);
    d.ack().await.unwrap();
    assert!(
        next_within(&mut c, 500).await.is_none(),
        "an acked job is never delivered again"
    );
}

pub async fn unknown_host_is_unroutable(b: Broker) {
    b.declare_host("hv01").await.unwrap();
    let err = b.publish_job(&job("nosuch")).await.unwrap_err();
    assert!(
        matches!(&err, PublishError::Unroutable { routing_key } if routing_key == "nosuch"),
        "{err:?}"
    );
    let mut cluster = job("x");
    cluster.target = Target::Cluster("Prod".to_owned());
    let err = b.publish_job(&cluster).await.unwrap_err();
    assert!(
        matches!(&err, PublishError::Unroutable { routing_key } if routing_key == "cluster.prod"),
        "{err:?}"
    );
    // The publisher is still healthy, and a routable job right after goes through.
    b.publish_job(&job("hv01")).await.unwrap();
    let mut c = b.consume_jobs("hv01", "w1").await.unwrap();
    next_job(&mut c).await.ack().await.unwrap();
}

pub async fn undecodable_messages_are_dead_lettered_with_reason(b: Broker) {
    b.declare_host("hv01").await.unwrap();
    let mut c = b.consume_jobs("hv01", "w1").await.unwrap();
    let mut unknown_v = serde_json::to_value(job("hv01")).unwrap();
    unknown_v["v"] = 99.into();
    let bodies: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        serde_json::to_vec(&unknown_v).unwrap(),
        br#"{"v":1,"job_id":"nope","kind":"noop"}"#.to_vec(),
        br#"{"kind":"noop"}"#.to_vec(),
    ];
    for body in &bodies {
        b.publish_raw("hv01", body.clone()).await.unwrap();
    }
    let good = job("hv01");
    b.publish_job(&good).await.unwrap();

    let d = next_job(&mut c).await;
    assert_eq!(
        d.envelope, good,
        "bad messages are skipped, the next valid job arrives"
    );
    d.ack().await.unwrap();

    let dead = b.dead_letters(4, WAIT).await.unwrap();
    let reasons: Vec<_> = dead.iter().map(|d| d.reason.as_deref()).collect();
    assert_eq!(
        reasons,
        vec![
            Some("malformed_json"),
            Some("unsupported_version"),
            Some("invalid_contract"),
            Some("missing_version"),
        ]
    );
    for (d, body) in dead.iter().zip(&bodies) {
        assert_eq!(&d.body, body);
        assert_eq!(d.routing_key, "hv01");
        assert!(!d.detail.as_deref().unwrap_or_default().is_empty());
    }
    assert!(
        dead[1].detail.as_deref().unwrap_or_default().contains("99"),
        "{:?}",
        dead[1].detail
    );
    assert!(b
        .dead_letters(1, Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());
}

pub async fn fifo_per_host(b: Broker) {
    b.declare_host("hv01").await.unwrap();
    b.declare_host("hv02").await.unwrap();
    let jobs: Vec<_> = (0..20)
        .map(|i| job(if i % 2 == 0 { "hv01" } else { "hv02" }))
        .collect();
    for j in &jobs {
        b.publish_job(j).await.unwrap();
    }
    for host in ["hv01", "hv02"] {
        let mut c = b.consume_jobs(host, "w1").await.unwrap();
        let expected: Vec<_> = jobs
            .iter()
            .filter(|j| j.target == Target::Host(host.to_owned()))
            .map(|j| j.job_id)
            .collect();
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            let d = next_job(&mut c).await;
            got.push(d.envelope.job_id);
            d.ack().await.unwrap();
        }
        assert_eq!(got, expected, "{host}");
    }
}

pub async fn single_active_consumer_and_handover(b: Broker) {
    b.declare_host("hv01").await.unwrap();
    let mut first = b.consume_jobs("hv01", "w1").await.unwrap();
    let mut second = b.consume_jobs("hv01", "w2").await.unwrap();
    let (j1, j2) = (job("hv01"), job("hv01"));
    b.publish_job(&j1).await.unwrap();
    b.publish_job(&j2).await.unwrap();

    let d1 = next_job(&mut first).await;
    assert_eq!(d1.envelope, j1);
    assert!(
        next_within(&mut second, 500).await.is_none(),
        "the standby receives nothing while the active consumer lives"
    );
    assert!(
        next_within(&mut first, 300).await.is_none(),
        "prefetch 1: nothing more until the first job is settled"
    );

    drop(first);
    let again = next_job(&mut second).await;
    assert_eq!(again.envelope, j1, "the unacked job is handed over first");
    assert!(again.redelivered);
    assert_eq!(again.delivery_count, 1);
    assert!(
        matches!(d1.ack().await, Err(BrokerError::DeliveryLost)),
        "a delivery of a dropped consumer cannot be settled"
    );
    again.ack().await.unwrap();
    let d2 = next_job(&mut second).await;
    assert_eq!(d2.envelope, j2);
    assert!(!d2.redelivered);
    d2.ack().await.unwrap();
}

pub async fn no_job_lost_or_reordered_under_consumer_churn(b: Broker) {
    b.declare_host("hv01").await.unwrap();
    let jobs: Vec<_> = (0..24).map(|_| job("hv01")).collect();
    for j in &jobs {
        b.publish_job(j).await.unwrap();
    }
    let mut acked = Vec::new();
    let mut round = 0;
    while acked.len() < jobs.len() {
        round += 1;
        assert!(round < 50, "too many rounds; acked {}", acked.len());
        let mut c = b.consume_jobs("hv01", &format!("w{round}")).await.unwrap();
        // Ack two, then "crash" holding the third.
        for _ in 0..2 {
            let Some(d) = next_within(&mut c, 3000).await else {
                break;
            };
            acked.push(d.envelope.job_id);
            d.ack().await.unwrap();
        }
        let held = next_within(&mut c, 300).await;
        drop(c);
        drop(held);
    }
    let expected: Vec<_> = jobs.iter().map(|j| j.job_id).collect();
    assert_eq!(acked, expected, "every job acked once, in publish order");
}

pub async fn queue_depth_counts_waiting_jobs(b: Broker) {
    b.declare_host("hv01").await.unwrap();
    assert!(matches!(
        b.queue_depth("hv09").await,
        Err(BrokerError::UnknownHost(h)) if h == "hv09"
    ));
    for _ in 0..3 {
        b.publish_job(&job("hv01")).await.unwrap();
    }
    let depth = b.queue_depth("HV01").await.unwrap();
    assert_eq!((depth.ready, depth.consumers), (3, 0));
    let mut c = b.consume_jobs("hv01", "w1").await.unwrap();
    assert_eq!(c.host(), "hv01");
    let d = next_job(&mut c).await;
    let depth = b.queue_depth("hv01").await.unwrap();
    assert_eq!((depth.ready, depth.consumers), (2, 1));
    d.ack().await.unwrap();
    // The broker still works after a failed lookup.
    b.publish_job(&job("hv01")).await.unwrap();
}

pub async fn requeue_redelivers_at_the_head(b: Broker) {
    let (j1, j2, mut c) = two_jobs_queued(&b).await;
    let d = next_job(&mut c).await;
    assert_eq!(d.envelope, j1);
    d.requeue().await.unwrap();
    let d = next_job(&mut c).await;
    assert_eq!(d.envelope, j1, "a requeued job goes back to the head");
    assert!(d.redelivered);
    assert_eq!(d.delivery_count, 1);
    d.ack().await.unwrap();
    ack_next(&mut c, &j2).await;
}

pub async fn delivery_limit_dead_letters(b: Broker) {
    b.declare_host("hv01").await.unwrap();
    let limit = b.topology().delivery_limit;
    let j = job("hv01");
    b.publish_job(&j).await.unwrap();
    let mut c = b.consume_jobs("hv01", "w1").await.unwrap();
    let mut deliveries = 0;
    while let Some(d) = next_within(&mut c, 1000).await {
        assert_eq!(d.delivery_count, deliveries);
        deliveries += 1;
        d.requeue().await.unwrap();
    }
    assert_eq!(
        deliveries,
        limit + 1,
        "delivered once plus `limit` redeliveries"
    );
    let dead = b.dead_letters(1, WAIT).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason.as_deref(), Some("delivery_limit"));
    assert_eq!(
        aetherv_core::JobEnvelope::from_slice(&dead[0].body).unwrap(),
        j
    );
}

pub async fn worker_dead_letters_with_its_reason(b: Broker) {
    let (j1, j2, mut c) = two_jobs_queued(&b).await;
    next_job(&mut c)
        .await
        .dead_letter("agent_failed", "step vm.create failed")
        .await
        .unwrap();
    let d = next_job(&mut c).await;
    assert_eq!(d.envelope, j2);
    d.ack().await.unwrap();
    let dead = b.dead_letters(5, Duration::from_secs(2)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason.as_deref(), Some("agent_failed"));
    assert_eq!(dead[0].detail.as_deref(), Some("step vm.create failed"));
    assert_eq!(dead[0].routing_key, "hv01");
    assert_eq!(
        aetherv_core::JobEnvelope::from_slice(&dead[0].body).unwrap(),
        j1
    );
}

pub async fn sent_events_are_stored_in_send_order_once_confirmed(b: Broker) {
    // Many sends in flight at once, confirms awaited afterwards (the worker's per-job path):
    // every confirm resolves, and the stream holds the events in the order they were sent.
    let events: Vec<_> = (0..300).map(event).collect();
    let mut pending = Vec::new();
    for ev in &events {
        pending.push(b.send_event(ev).await.unwrap());
    }
    for p in pending {
        p.confirmed().await.unwrap();
    }
    let mut s = b.replay_events(StreamOffset::First).await.unwrap();
    for ev in &events {
        let (_, got) = tokio::time::timeout(WAIT, s.next()).await.unwrap().unwrap();
        assert_eq!(&got, ev);
    }
}

pub async fn events_replay_from_first_and_offset_then_tail(b: Broker) {
    let events: Vec<_> = (0..5).map(event).collect();
    for ev in &events {
        b.publish_event(ev).await.unwrap();
    }
    let mut s = b.replay_events(StreamOffset::First).await.unwrap();
    let mut offsets = Vec::new();
    for ev in &events {
        let (offset, got) = tokio::time::timeout(WAIT, s.next()).await.unwrap().unwrap();
        assert_eq!(&got, ev);
        offsets.push(offset);
    }
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");

    // From an offset: starts exactly there.
    let mut from3 = b
        .replay_events(StreamOffset::Offset(offsets[3]))
        .await
        .unwrap();
    let (o, got) = tokio::time::timeout(WAIT, from3.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((o, &got), (offsets[3], &events[3]));
    let (o, got) = tokio::time::timeout(WAIT, from3.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((o, &got), (offsets[4], &events[4]));

    // Live tail: both readers see an event published after they caught up.
    let late = event(99);
    b.publish_event(&late).await.unwrap();
    for stream in [&mut s, &mut from3] {
        let (o, got) = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, late);
        assert!(o > offsets[4]);
    }
}

pub async fn events_replay_from_next_sees_only_new_events(b: Broker) {
    b.publish_event(&event(0)).await.unwrap();
    let mut s = b.replay_events(StreamOffset::Next).await.unwrap();
    // Give the subscription time to attach before publishing (streams are asynchronous).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = event(1);
    b.publish_event(&fresh).await.unwrap();
    let (_, got) = tokio::time::timeout(WAIT, s.next()).await.unwrap().unwrap();
    assert_eq!(got, fresh);
}

pub async fn events_replay_from_a_timestamp(b: Broker) {
    let old = event(0);
    b.publish_event(&old).await.unwrap();
    // RabbitMQ resolves timestamps to whole seconds and chunks; leave a clear gap.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let since = chrono::Utc::now();
    let new = event(1);
    b.publish_event(&new).await.unwrap();
    let mut s = b
        .replay_events(StreamOffset::Timestamp(since))
        .await
        .unwrap();
    let (o, got) = tokio::time::timeout(WAIT, s.next()).await.unwrap().unwrap();
    assert_eq!(got, new);
    assert!(o >= 1);
}

pub async fn one_leader_per_role_and_handover(b: Broker) {
    let mut a = b.leadership("bot", "a").await.unwrap();
    assert!(tokio::time::timeout(WAIT, a.acquire()).await.unwrap());
    assert!(a.is_leader());
    let mut c = b.leadership("bot", "c").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), c.acquire())
            .await
            .is_err(),
        "only one leader per role"
    );
    assert!(!c.is_leader());
    // Roles are independent.
    let mut other = b.leadership("scheduler", "x").await.unwrap();
    assert!(tokio::time::timeout(WAIT, other.acquire()).await.unwrap());
    // `lost` resolves at once for a non-leader and never while leading.
    tokio::time::timeout(WAIT, c.lost()).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), a.lost())
        .await
        .is_err());
    drop(a);
    assert!(tokio::time::timeout(WAIT, c.acquire()).await.unwrap());
    assert!(c.is_leader());
    assert!(other.is_leader());
}

pub async fn close_ends_consumers_and_refuses_publishes(b: Broker) {
    b.declare_host("hv01").await.unwrap();
    let mut c = b.consume_jobs("hv01", "w1").await.unwrap();
    let mut s = b.replay_events(StreamOffset::Next).await.unwrap();
    let waiter = tokio::spawn(async move { c.next().await.is_none() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.is_connected());
    b.close().await;
    assert!(!b.is_connected());
    assert!(matches!(
        b.leadership("bot", "late").await,
        Err(BrokerError::Closed)
    ));
    assert!(tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap());
    assert!(tokio::time::timeout(WAIT, s.next())
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        b.publish_job(&job("hv01")).await,
        Err(PublishError::Broker(BrokerError::Closed))
    ));
}
