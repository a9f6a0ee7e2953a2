//! Job threads against simulated hosts and an in-process worker: the streamed thread of a
//! deployment, `vm list` afterwards, and a bot killed mid-job that resumes the thread.

use super::*;
use aetherv_bot::reply::{MessageRef, Reply, ThreadMessage};
use aetherv_bot::state::Phase;
use aetherv_sim::SimConfig;
use aetherv_worker::simulated::Site;
use tokio_util::sync::CancellationToken;

/// Simulated hosts on loopback and an in-process worker serving them.
struct World {
    broker: Broker,
    stop: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn world(cfg: SimConfig) -> World {
    let broker = broker();
    let stop = CancellationToken::new();
    aetherv_worker::simulated::start_site(&broker, Site::new(cfg), &stop)
        .await
        .expect("site");
    World { broker, stop }
}

fn finished(e: &Engine) -> bool {
    !e.jobs().is_empty() && e.is_idle()
}

/// On two simulated hosts: `line` typed by alice, approved by bob, run to its end; the
/// world (kept alive), the engine and the replies.
async fn approved_and_run(line: &str) -> (World, Engine, Vec<Reply>) {
    let w = world(SimConfig::with_hosts(2)).await;
    let mut e = engine(&w.broker, policy(1, 3600), &["hv01", "hv02"]);
    let mut events = w
        .broker
        .replay_events(aetherv_broker::StreamOffset::Next)
        .await
        .expect("stream");
    say(&mut e, "alice", line).await;
    say(&mut e, "bob", "approve").await;
    let out = pump(&mut e, &mut events, Duration::from_secs(60), finished).await;
    let job = e.jobs().first().expect("job").view.job;
    assert_eq!(e.job(job).expect("job").phase, Phase::Succeeded);
    (w, e, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_deployment_streams_its_thread_and_shows_in_vm_list() {
    let (_w, mut e, out) =
        approved_and_run("deploy vm vm_name=web01 target_host=hv01 gb_ram=2 cpu_cores=1").await;
    let t = texts(&out);
    assert!(
        t.iter()
            .any(|l| l.contains("✔ Job") && l.contains("vm_name: web01")),
        "{t:#?}"
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Reply::JobFinished { log: Some(l), .. } if !l.content.is_empty())));
    assert!(out.iter().any(|o| matches!(
        o,
        Reply::ThreadUpdate(ThreadMessage {
            msg: MessageRef::Log(0),
            edit: false,
            ..
        })
    )));
    let list = say(&mut e, "eve", "vm list").await;
    assert!(list[0].starts_with("hv01  web01  "), "{list:?}");
    assert!(say(&mut e, "eve", "vm show web01").await[0].starts_with("web01 on hv01: "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_killed_mid_job_resumes_the_thread() {
    let cfg = SimConfig::with_hosts(2).op_latency("vm.create", Duration::from_secs(3));
    let w = world(cfg).await;
    let mut e1 = engine(&w.broker, Policy::default(), &["hv01", "hv02"]);
    let mut events = w
        .broker
        .replay_events(aetherv_broker::StreamOffset::Next)
        .await
        .expect("stream");
    say(&mut e1, "alice", "deploy vm vm_name=db01 target_host=hv02").await;
    pump(&mut e1, &mut events, Duration::from_secs(30), |e| {
        e.jobs().iter().any(|j| j.phase == Phase::Running)
    })
    .await;
    drop(e1);
    let mut e2 = engine(&w.broker, Policy::default(), &["hv01", "hv02"]);
    let mut events = replay(&w.broker).await;
    let out = pump(&mut e2, &mut events, Duration::from_secs(60), finished).await;
    let t = texts(&out);
    assert!(
        t.iter().any(|l| l.contains("· running")),
        "thread re-posted: {t:#?}"
    );
    assert!(
        t.iter().any(|l| l.contains("✔ Job") && l.contains("db01")),
        "{t:#?}"
    );
    assert_eq!(
        say(&mut e2, "eve", "vm list --host hv02").await[0]
            .split("  ")
            .nth(1),
        Some("db01")
    );
}

#[tokio::test]
async fn a_job_that_ended_while_no_bot_ran_gets_its_final_message_once() {
    let cfg = SimConfig::with_hosts(1).op_latency("vm.create", Duration::from_secs(1));
    let w = world(cfg).await;
    let mut e1 = engine(&w.broker, Policy::default(), &["hv01"]);
    let mut events = w
        .broker
        .replay_events(aetherv_broker::StreamOffset::Next)
        .await
        .expect("stream");
    say(
        &mut e1,
        "alice",
        "deploy vm vm_name=quiet01 target_host=hv01",
    )
    .await;
    pump(&mut e1, &mut events, Duration::from_secs(30), |e| {
        e.jobs().iter().any(|j| j.phase == Phase::Running)
    })
    .await;
    // The bot dies; the job ends while no bot runs.
    drop(e1);
    let ended = loop {
        let (_, ev) = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("the job ends")
            .expect("stream open");
        if matches!(ev.body, aetherv_core::EventBody::JobSucceeded { .. }) {
            break ev.at;
        }
    };
    while chrono::Utc::now() <= ended {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A bot started after the end restores the job and still owes its thread the final message.
    let mut e2 = engine(&w.broker, Policy::default(), &["hv01"]);
    let mut events = replay(&w.broker).await;
    let out = pump(&mut e2, &mut events, Duration::from_secs(30), |e| {
        e.jobs().iter().all(|j| !j.restored) && !e.jobs().is_empty()
    })
    .await;
    let finals = |out: &[Reply]| {
        texts(out)
            .iter()
            .filter(|l| l.contains("✔ Job") && l.contains("quiet01"))
            .count()
    };
    assert_eq!(finals(&out), 1, "{:#?}", texts(&out));
    // It marks the thread finished on the stream (at its next tick).
    let _ = e2.tick(tokio::time::Instant::now()).await.expect("tick");
    drop(e2);
    // The next bot finds the mark and posts nothing again.
    let mut e3 = engine(&w.broker, Policy::default(), &["hv01"]);
    let mut events = replay(&w.broker).await;
    let out = pump(&mut e3, &mut events, Duration::from_secs(30), |e| {
        e.jobs().iter().all(|j| !j.restored) && !e.jobs().is_empty()
    })
    .await;
    assert_eq!(finals(&out), 0, "{:#?}", texts(&out));
}

#[tokio::test]
async fn only_the_leader_bot_answers_and_a_standby_takes_over() {
    use aetherv_bot::{run_console, ConsoleOptions};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = broker();
    let opts = |c: &str| ConsoleOptions {
        first_user: "eve".into(),
        attach_dir: None,
        candidate: c.into(),
        templates_dir: None,
    };
    // Bot A leads; its input stays open.
    let (mut a_in, a_in_r) = tokio::io::duplex(1024);
    let (a_out_w, _a_out) = tokio::io::duplex(1 << 16);
    let stop_a = CancellationToken::new();
    let a = tokio::spawn(run_console(
        engine(&b, Policy::default(), &["hv01"]),
        tokio::io::BufReader::new(a_in_r),
        a_out_w,
        opts("a"),
        stop_a.clone(),
    ));
    a_in.write_all(b"hosts\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Bot B waits in line: its input is not read while A leads.
    let (mut b_in, b_in_r) = tokio::io::duplex(1024);
    let (b_out_w, mut b_out) = tokio::io::duplex(1 << 16);
    let bot_b = tokio::spawn(run_console(
        engine(&b, Policy::default(), &["hv01"]),
        tokio::io::BufReader::new(b_in_r),
        b_out_w,
        opts("b"),
        CancellationToken::new(),
    ));
    b_in.write_all(b"hosts\n").await.expect("write");
    drop(b_in);
    let mut buf = vec![0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(300), b_out.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the standby bot answered while another bot leads"
    );
    stop_a.cancel();
    a.await.expect("join").expect("bot a stops cleanly");
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), b_out.read_to_string(&mut text))
        .await
        .expect("standby took over")
        .expect("read");
    assert_eq!(text, "hv01  not polled yet  0 VM(s)  0 queued\n");
    bot_b
        .await
        .expect("join")
        .expect("bot b ends at end of input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_show_positions_and_a_pending_name_is_claimed_before_the_first_inventory() {
    let w =
        world(SimConfig::with_hosts(2).op_latency("vm.create", Duration::from_millis(300))).await;
    let mut e = engine(&w.broker, Policy::default(), &["hv01", "hv02"]);
    let mut events = w
        .broker
        .replay_events(aetherv_broker::StreamOffset::Next)
        .await
        .expect("stream");
    let first = say(&mut e, "alice", "deploy vm vm_name=web01 target_host=hv01").await;
    assert!(
        first[0].contains("· queued · position 1 in queue"),
        "{first:?}"
    );
    // The same name again, before any inventory of hv01: refused, it is claimed.
    let again = say(&mut e, "alice", "deploy vm vm_name=web01 target_host=hv01").await;
    assert!(
        again
            .iter()
            .any(|l| l.contains("vm_name") && l.contains("web01")),
        "{again:?}"
    );
    assert!(again[0].contains("not accepted"), "{again:?}");
    let second = say(&mut e, "alice", "deploy vm vm_name=web02 target_host=hv01").await;
    assert!(
        second[0].contains("· queued · position 2 in queue"),
        "{second:?}"
    );
    pump(&mut e, &mut events, Duration::from_secs(60), |e| {
        e.jobs().len() == 2 && e.is_idle()
    })
    .await;
    assert_eq!(
        e.jobs()
            .iter()
            .filter(|j| j.phase == Phase::Succeeded)
            .count(),
        2
    );
    let mine = say(&mut e, "alice", "jobs --mine --host hv01").await;
    assert_eq!(mine[0].lines().count(), 2, "{mine:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_placed_through_a_cluster_is_recorded_on_the_member_it_ran_on() {
    let (_w, mut e, _) =
        approved_and_run("deploy vm vm_name=web05 target_cluster=clu01 gb_ram=2 cpu_cores=1").await;
    let list = say(&mut e, "eve", "vm list").await;
    let rows: Vec<&String> = list.iter().filter(|l| l.contains("web05")).collect();
    assert_eq!(rows.len(), 1, "{list:?}");
    assert!(
        rows[0].starts_with("hv01  web05") || rows[0].starts_with("hv02  web05"),
        "{list:?}"
    );
    let hosts = say(&mut e, "eve", "hosts").await;
    assert!(!hosts.iter().any(|l| l.contains("cluster.")), "{hosts:?}");
}
