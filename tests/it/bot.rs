//! `aetherv demo` driven by scripted stdin through the real binary: a deployment, approval by a
//! second user, the streamed job thread, success, and `vm list` showing the VM; once with the
//! in-process broker and once against RabbitMQ.

use crate::harness::{amqp_url, bin, cleanup, prefix};
use std::io::Write;
use std::process::{Command, Stdio};

const SCRIPT: &str = "\
help
deploy vm vm_name=web01 target_host=hv01 gb_ram=2 cpu_cores=1
bob> approve
/wait
eve> vm list
eve> deploy vm vm_name=x target_host=hv01
";

/// A newcomer's session: `deploy`, answering the guided form's questions in order (`-` keeps
/// a default), approval by bob, the streamed thread, then `vm list`.
const GUIDED: &str = "\
deploy
hv01
web02
-
-
-
-
-
Windows Server 2022
-
-
-
prod
-
-
admin
Demo-Passw0rd!
no
no
-
bob> approve
/wait
vm list
";

fn run_demo(amqp: Option<&str>, prefix: &str) -> (String, tempfile::TempDir) {
    run_demo_script(amqp, prefix, SCRIPT)
}

fn run_demo_script(amqp: Option<&str>, prefix: &str, script: &str) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(bin());
    cmd.args([
        "demo",
        "--hosts",
        "2",
        "--latency-ms",
        "100",
        "--prefix",
        prefix,
    ])
    .arg("--attach-dir")
    .arg(dir.path())
    .env_remove("AETHERV_AMQP_URL")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(url) = amqp {
        cmd.env("AETHERV_AMQP_URL", url);
    }
    let mut child = cmd.spawn().expect("spawn demo");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    let out = child.wait_with_output().expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, dir)
}

/// Where `needle` is in `stdout`; panics showing `stdout` when it is missing.
fn position(stdout: &str, needle: &str) -> usize {
    stdout
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` missing from:\n{stdout}"))
}

fn check_transcript(stdout: &str, dir: &std::path::Path) {
    let find = |needle: &str| position(stdout, needle);
    let help = find("Commands you may run (alice):");
    let request = find("Approval needed for job ");
    let short = &stdout[request + "Approval needed for job ".len()..][..8];
    let approved = find(&format!("Job {short} approved by bob; published to hv01."));
    let queued = find(&format!("[{short}] Job {short} · vm.create on hv01 · "));
    let log = find(&format!("[{short}] log 1:"));
    let done = find(&format!(
        "[{short}] ✔ Job {short} succeeded (vm.create on hv01)."
    ));
    let list = find("hv01  web01  ");
    let refused = find("eve: `deploy` needs the operator role.");
    assert!(help < request && request < approved && approved < queued);
    assert!(queued < log && log < done && done < list && list < refused);
    let attached = dir.join(format!("job-{short}.log"));
    let full = std::fs::read_to_string(&attached).expect("full log attached");
    assert!(!full.is_empty());
    assert!(stdout.contains(&format!("attached {}", attached.display())));
}

#[test]
fn demo_in_process_deploy_approve_stream_list() {
    let (stdout, dir) = run_demo(None, &prefix());
    check_transcript(&stdout, dir.path());
}

#[test]
fn demo_guided_managed_deployment_from_a_bare_deploy() {
    let (stdout, _dir) = run_demo_script(None, &prefix(), GUIDED);
    let find = |needle: &str| position(&stdout, needle);
    let form = find("alice: filling in the Managed deployment form");
    let first = find("alice: Host (target_host)");
    let secret = find("alice: Local admin password (guest_la_pw) *");
    let request = find("Approval needed for job ");
    let short = &stdout[request + "Approval needed for job ".len()..][..8];
    let redacted = find("guest_la_pw = ••••••");
    let approved = find(&format!("Job {short} approved by bob; published to hv01."));
    let done = find(&format!(
        "[{short}] ✔ Job {short} succeeded (deployment.managed on hv01)."
    ));
    let list = find("hv01  web02  ");
    assert!(form < first && first < secret && secret < request && request < redacted);
    assert!(redacted < approved && approved < done && done < list);
    assert!(
        !stdout.contains("Demo-Passw0rd!"),
        "the password was shown:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_against_rabbitmq() {
    let url = amqp_url();
    let p = prefix();
    let (u, pp) = (url.clone(), p.clone());
    let (stdout, dir) = tokio::task::spawn_blocking(move || run_demo(Some(&u), &pp))
        .await
        .expect("demo thread");
    check_transcript(&stdout, dir.path());
    cleanup(&url, &p, &["hv01".to_string(), "hv02".to_string()]).await;
    delete_leader_queue(&url, &p).await;
}

/// The bot's leader-election queue (not covered by the harness's clean-up).
async fn delete_leader_queue(url: &str, prefix: &str) {
    let queue = aetherv_broker::Topology::new(prefix).leader_queue(aetherv_bot::LEADER_ROLE);
    let Ok(conn) = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        let _ = ch
            .queue_delete(
                queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    let _ = conn.close(0, "test cleanup".into()).await;
}

#[test]
fn a_missing_attach_dir_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-dir");
    let out = Command::new(bin())
        .args(["demo", "--hosts", "1", "--attach-dir"])
        .arg(&missing)
        .env_remove("AETHERV_AMQP_URL")
        .stdin(Stdio::null())
        .output()
        .expect("demo");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--attach-dir") && err.contains("no-such-dir"),
        "{err}"
    );
}
