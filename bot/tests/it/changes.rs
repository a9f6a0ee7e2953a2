//! `vm update`, `disk remove`, `nic remove`, `retry` and `vm show` on simulated hosts over
//! WinRM with an in-process worker: each request goes through the gate, roles, policy and
//! approval, and the VM changes on the host (seen in the next inventory poll). Refusals name
//! the field or the choice, before any approval.

use super::*;
use aetherv_bot::state::Phase;
use aetherv_core::JobId;
use aetherv_sim::SimConfig;
use aetherv_worker::simulated::Site;
use tokio_util::sync::CancellationToken;

struct World {
    broker: Broker,
    stop: CancellationToken,
    events: EventStream,
    e: Engine,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Two simulated hosts polled every second, one approval asked for everything.
async fn world() -> World {
    world_with(policy(1, 3600)).await
}

async fn world_with(policy: Policy) -> World {
    let broker = broker();
    let stop = CancellationToken::new();
    let mut site = Site::new(SimConfig::with_hosts(2));
    site.inventory_interval_secs = Some(1);
    aetherv_worker::simulated::start_site(&broker, site, &stop)
        .await
        .expect("site");
    let events = broker
        .replay_events(aetherv_broker::StreamOffset::Next)
        .await
        .expect("stream");
    let e = engine(&broker, policy, &["hv01", "hv02"]);
    World {
        broker,
        stop,
        events,
        e,
    }
}

impl World {
    /// `line` as `user`: the replies, and their console texts.
    async fn say(&mut self, user: &str, line: &str) -> (Vec<Reply>, String) {
        let out = self
            .e
            .handle_line(&Principal::console(user), line)
            .await
            .expect("handled");
        let t = texts(&out).join("\n");
        (out, t)
    }

    /// `line` by `user`, approved by bob, run to its end: the job and the replies of its run.
    async fn run(&mut self, user: &str, line: &str) -> (JobId, Vec<Reply>) {
        let (out, t) = self.say(user, line).await;
        let job = aetherv_bot::engine::opened(&out).unwrap_or_else(|| panic!("{line}: {t}"));
        assert!(
            out.iter()
                .any(|r| matches!(r, Reply::ApprovalRequested { .. })),
            "{line}: policy asks for approval: {t}"
        );
        let short = self.e.job(job).expect("job").view.short;
        let (_, t) = self.say("bob", &format!("approve {short}")).await;
        assert!(!t.contains("cannot"), "{t}");
        let out = pump(
            &mut self.e,
            &mut self.events,
            Duration::from_secs(60),
            |e| e.job(job).is_some_and(|j| j.phase.is_final()) && e.is_idle(),
        )
        .await;
        (job, out)
    }

    /// Runs `line` and asserts the job succeeded.
    async fn ok(&mut self, line: &str) {
        let (job, out) = self.run("alice", line).await;
        assert_eq!(
            self.e.job(job).expect("job").phase,
            Phase::Succeeded,
            "{line}: {:#?}",
            texts(&out)
        );
    }

    /// Follows events until `vm show NAME` satisfies `done` (the next inventory polls).
    /// Follows events until `hosts` satisfies `done`.
    async fn hosts_until(&mut self, done: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, t) = self.say("eve", "hosts").await;
            if done(&t) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "hosts: {t}");
            if let Ok(Some((_, ev))) =
                tokio::time::timeout(Duration::from_millis(200), self.events.next()).await
            {
                self.e.handle_event(&ev, tokio::time::Instant::now());
            }
        }
    }

    async fn show_until(&mut self, name: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, t) = self.say("eve", &format!("vm show {name}")).await;
            if done(&t) {
                return t;
            }
            assert!(tokio::time::Instant::now() < deadline, "vm show: {t}");
            if let Ok(Some((_, ev))) =
                tokio::time::timeout(Duration::from_millis(200), self.events.next()).await
            {
                self.e.handle_event(&ev, tokio::time::Instant::now());
            }
        }
    }
}

/// No reply of `out` asks for approval.
fn no_approval(out: &[Reply]) -> bool {
    !out.iter()
        .any(|r| matches!(r, Reply::ApprovalRequested { .. } | Reply::JobOpened(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_update_changes_memory_and_processors_on_the_host() {
    let mut w = world().await;
    w.ok("deploy vm vm_name=web01 target_host=hv01 gb_ram=2 cpu_cores=1")
        .await;
    w.show_until("web01", |t| t.contains("1 vCPU, 2 GB")).await;
    // Refused before approval, naming the field.
    let (out, t) = w.say("alice", "vm update web01 gb_ram=600").await;
    assert!(no_approval(&out), "{t}");
    assert!(
        t.contains("refused before approval (vm.update): gb_ram: gb_ram is 1 to 512"),
        "{t}"
    );
    let (out, t) = w.say("alice", "vm update web01 cpu_cores=65").await;
    assert!(no_approval(&out), "{t}");
    assert!(t.contains("cpu_cores: cpu_cores is 1 to 64"), "{t}");
    let (_, t) = w.say("alice", "vm update web01 notes=x").await;
    assert!(
        t.contains("argument 2 is not a field this command takes"),
        "{t}"
    );
    let (_, t) = w.say("alice", "vm update nope gb_ram=2").await;
    assert!(t.contains("no VM named nope"), "{t}");
    let (_, t) = w.say("eve", "vm update web01 gb_ram=4").await;
    assert!(t.contains("operator"), "a reader may not: {t}");
    // Through approval: the VM changes on the host.
    w.ok("vm update web01 gb_ram=4 cpu_cores=2").await;
    w.show_until("web01", |t| t.contains("2 vCPU, 4 GB")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_and_nic_remove_choose_what_to_remove_and_refuse_the_ambiguous() {
    let mut w = world().await;
    w.ok("deploy vm vm_name=web01 target_host=hv01 gb_ram=2 cpu_cores=1")
        .await;
    w.ok("disk add web01 10").await;
    w.ok("disk add web01 20").await;
    w.ok("nic add web01 prod").await;
    w.ok("nic add web01 dev").await;
    let shown = w
        .show_until("web01", |t| {
            t.matches("\n  disk ").count() == 2 && t.matches("\n  nic ").count() == 2
        })
        .await;
    // vm show: disks with path and size, adapters with network, switch and MAC.
    assert!(shown.contains(", 10 GB, id "), "{shown}");
    assert!(shown.contains(", 20 GB, id "), "{shown}");
    assert!(
        shown.contains("nic Network Adapter 1 on prod (switch "),
        "{shown}"
    );
    assert!(shown.contains(", MAC 00155D"), "{shown}");
    let disk_files: Vec<String> = shown
        .lines()
        .filter_map(|l| l.trim().strip_prefix("disk "))
        .filter_map(|l| l.split(',').next())
        .map(|p| p.rsplit(['\\', '/']).next().unwrap_or(p).to_string())
        .collect();
    assert_eq!(disk_files.len(), 2, "{shown}");

    // The first disk is the boot disk: refused without --boot-disk, saying so.
    let (out, t) = w
        .say("alice", &format!("disk remove web01 {}", disk_files[0]))
        .await;
    assert!(no_approval(&out), "{t}");
    assert!(
        t.contains("is the boot disk") && t.contains("--boot-disk"),
        "{t}"
    );
    let (out, t) = w.say("alice", "disk remove web01 nope.vhdx").await;
    assert!(no_approval(&out), "{t}");
    assert!(
        t.contains("has no disk nope.vhdx; it has ") && t.contains(&disk_files[1]),
        "{t}"
    );
    // The second one goes, and the reply says which.
    let (job, out) = w
        .run("alice", &format!("disk remove web01 {}", disk_files[1]))
        .await;
    assert_eq!(w.e.job(job).expect("job").phase, Phase::Succeeded);
    let _ = out;
    w.show_until("web01", |t| t.matches("\n  disk ").count() == 1)
        .await;

    // Two adapters, none named: refused with both as choices.
    let (out, t) = w.say("alice", "nic remove web01").await;
    assert!(no_approval(&out), "{t}");
    assert!(
        t.contains("has 2 network adapters; say which by name or id")
            && t.contains("Network Adapter 1 (id ")
            && t.contains("Network Adapter 2 (id "),
        "{t}"
    );
    let (_, t) = w.say("alice", "nic remove web01 eth9").await;
    assert!(t.contains("has no network adapter eth9; it has "), "{t}");
    let (out, t) = w
        .say("alice", "nic remove web01 \"network adapter 2\"")
        .await;
    assert!(
        t.contains("removing network adapter Network Adapter 2 (id ") && t.contains("on dev"),
        "{t}"
    );
    let job = aetherv_bot::engine::opened(&out).expect("a job");
    let short = w.e.job(job).expect("job").view.short;
    w.say("bob", &format!("approve {short}")).await;
    pump(&mut w.e, &mut w.events, Duration::from_secs(60), |e| {
        e.job(job).is_some_and(|j| j.phase.is_final()) && e.is_idle()
    })
    .await;
    assert_eq!(w.e.job(job).expect("job").phase, Phase::Succeeded);
    w.show_until("web01", |t| t.matches("\n  nic ").count() == 1)
        .await;
    // The only adapter needs no name; the only disk needs --boot-disk.
    w.ok("nic remove web01").await;
    let (_, t) = w
        .say("alice", &format!("disk remove web01 {}", disk_files[0]))
        .await;
    assert!(t.contains("is the only disk"), "{t}");
    w.ok(&format!("disk remove web01 {} --boot-disk", disk_files[0]))
        .await;
    let t = w
        .show_until("web01", |t| {
            !t.contains("\n  disk ") && !t.contains("\n  nic ")
        })
        .await;
    assert!(t.starts_with("web01 on hv01: Off, 1 vCPU, 2 GB"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_agent_words_reads_in_chat_terms_and_retry_asks_again() {
    let mut w = world().await;
    w.ok("deploy vm vm_name=web01 target_host=hv01 gb_ram=2 cpu_cores=1")
        .await;
    w.ok("disk add web01 10").await;
    w.show_until("web01", |t| t.contains("\n  disk ")).await;
    // The agent says "pass delete_disks"; chat shows the flag to type.
    let (job, out) = w.run("alice", "vm delete web01").await;
    assert_eq!(w.e.job(job).expect("job").phase, Phase::Failed);
    let t = texts(&out).join("\n");
    let last = t.lines().find(|l| l.contains("✘ Job")).unwrap_or_default();
    assert!(
        last.ends_with(
            "disks_attached: VM 'web01' has 1 disk(s) attached; add --delete-disks to delete them"
        ),
        "{t}"
    );
    let short = w.e.job(job).expect("job").view.short;

    // Who may retry: the requester or an admin; a reader lacks the role.
    let (_, t) = w.say("eve", &format!("retry {short}")).await;
    assert!(t.contains("operator"), "{t}");
    let (out, t) = w.say("frank", &format!("retry {short}")).await;
    assert!(no_approval(&out), "{t}");
    assert!(
        t.contains(&format!(
            "only its requester (alice) or an admin can retry job {short}"
        )),
        "{t}"
    );
    // The admin's retry is a new request, through policy again.
    let (out, t) = w.say("root", &format!("retry {short}")).await;
    assert!(
        t.contains(&format!("retrying job {short} as a new request")),
        "{t}"
    );
    let again = aetherv_bot::engine::opened(&out).expect("a new job");
    assert_ne!(again, job);
    assert!(out
        .iter()
        .any(|r| matches!(r, Reply::ApprovalRequested { .. })));
    let new = w.e.job(again).expect("job");
    assert_eq!(
        (new.view.kind.as_str(), new.view.target.as_str()),
        ("vm.delete", "hv01")
    );
    assert_eq!(new.view.requester, "root");
    w.say("root", &format!("cancel {}", new.view.short)).await;

    // A job that succeeded is not retried.
    let first = w.e.jobs().into_iter().find(|j| j.view.kind == "vm.create");
    let first = first.expect("the deploy").view.short;
    let (_, t) = w.say("alice", &format!("retry {first}")).await;
    assert!(
        t.contains("is succeeded; only a failed or cancelled job can be retried"),
        "{t}"
    );

    // A cancelled deploy retried runs: the VM appears on the host.
    let (out, _) = w
        .say(
            "alice",
            "deploy vm vm_name=web02 target_host=hv02 gb_ram=1 cpu_cores=1",
        )
        .await;
    let cancelled = aetherv_bot::engine::opened(&out).expect("job");
    let c_short = w.e.job(cancelled).expect("job").view.short;
    w.say("alice", &format!("cancel {c_short}")).await;
    assert_eq!(w.e.job(cancelled).expect("job").phase, Phase::Cancelled);
    let (again, _) = w.run("alice", &format!("retry {c_short}")).await;
    assert_eq!(w.e.job(again).expect("job").phase, Phase::Succeeded);
    w.show_until("web02", |t| t.starts_with("web02 on hv02: "))
        .await;
    // Retried once more, the gate refuses it once an inventory of hv02 shows the name taken
    // (`vm show` above may have answered from the job's result before any poll was read).
    w.hosts_until(|t| t.lines().any(|l| l.starts_with("hv02  up")))
        .await;
    let (out, t) = w.say("alice", &format!("retry {c_short}")).await;
    assert!(no_approval(&out), "{t}");
    assert!(
        t.contains("vm_name") && t.contains("already exists on hv02"),
        "{t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_request_the_bot_no_longer_has_is_not_retried() {
    // No approval: after a restart the bot knows the job from its events only.
    let mut w = world_with(Policy::default()).await;
    let (out, _) = w
        .say(
            "alice",
            "deploy vm vm_name=web01 target_host=hv01 gb_ram=2 cpu_cores=1",
        )
        .await;
    let job = aetherv_bot::engine::opened(&out).expect("job");
    pump(&mut w.e, &mut w.events, Duration::from_secs(60), |e| {
        e.job(job).is_some_and(|j| j.phase.is_final()) && e.is_idle()
    })
    .await;
    w.show_until("web01", |t| t.starts_with("web01 on hv01"))
        .await;
    let (out, _) = w.say("alice", "disk add web01 10").await;
    let job = aetherv_bot::engine::opened(&out).expect("job");
    pump(&mut w.e, &mut w.events, Duration::from_secs(60), |e| {
        e.job(job).is_some_and(|j| j.phase.is_final()) && e.is_idle()
    })
    .await;
    w.show_until("web01", |t| t.contains("\n  disk ")).await;
    let (out, _) = w.say("alice", "vm delete web01").await;
    let failed = aetherv_bot::engine::opened(&out).expect("job");
    pump(&mut w.e, &mut w.events, Duration::from_secs(60), |e| {
        e.job(failed).is_some_and(|j| j.phase.is_final()) && e.is_idle()
    })
    .await;
    assert_eq!(w.e.job(failed).expect("job").phase, Phase::Failed);
    let short = w.e.job(failed).expect("job").view.short;
    // A restarted bot rebuilds the job from the stream, without its request.
    let mut e2 = engine(&w.broker, Policy::default(), &["hv01", "hv02"]);
    let mut events = replay(&w.broker).await;
    pump(&mut e2, &mut events, Duration::from_secs(30), |e| {
        e.job(failed).is_some_and(|j| j.phase == Phase::Failed)
    })
    .await;
    let t = say(&mut e2, "alice", &format!("retry {short}"))
        .await
        .join("\n");
    assert!(
        t.contains(&format!("the bot no longer has the request of job {short}")),
        "{t}"
    );
}

#[tokio::test]
async fn a_retried_deployment_keeps_its_sealed_secrets_across_a_restart() {
    use super::approvals::{queued_job, ready, MANAGED};
    use aetherv_core::secrets;
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let worker = secrets::generate_identity();
    let mut e1 = engine_with(&b, policy(1, 3600), &["hv01"], vec![worker.to_public()]);
    say(&mut e1, "alice", MANAGED).await;
    let job = e1.jobs().first().expect("job").view.clone();
    say(&mut e1, "alice", &format!("cancel {}", job.short)).await;
    drop(e1);
    // The restarted bot knows the request from `approval.requested`, sealed secrets and all.
    let mut e2 = engine_with(&b, policy(1, 3600), &["hv01"], vec![worker.to_public()]);
    let mut events = replay(&b).await;
    pump(&mut e2, &mut events, Duration::from_secs(10), |e| {
        e.job(job.job).is_some_and(|j| j.phase == Phase::Cancelled)
    })
    .await;
    let out = say(&mut e2, "alice", &format!("retry {}", job.short))
        .await
        .join("\n");
    assert!(out.contains("as a new request"), "{out}");
    assert!(!out.contains("Sup3rSecret!"), "{out}");
    let out = say(&mut e2, "bob", "approve").await.join("\n");
    assert!(out.contains("approved by bob"), "{out}");
    assert_eq!(ready(&b).await, 1);
    let queued = queued_job(&b).await;
    assert_ne!(queued.job_id, job.job);
    let opened = secrets::open(queued.secrets.as_deref().expect("sealed"), &worker).expect("opens");
    assert_eq!(
        opened.get("guest_la_pw"),
        Some(&serde_json::json!("Sup3rSecret!"))
    );
}
