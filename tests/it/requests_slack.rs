//! Slack approval of an AMQP request, checked from outside: `aetherv slack` in HTTP mode on a
//! throwaway RabbitMQ vhost, `aetherv sim` and `aetherv worker` for the host, the pika producer
//! with its own RabbitMQ user, and a Python fake of Slack's Web API that clicks Approve as an
//! approver with a real request signature. The producer receives the job id and follows the
//! job's events to the end.

use crate::harness::{
    bin, free_port, prefix, python, root, start_sim, start_worker, write_in, Proc,
};
use crate::requests::{producer, Vhost};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

#[test]
fn an_amqp_request_is_approved_in_slack_and_the_producer_follows_it_to_the_end() {
    let prefix = prefix();
    let vhost = Vhost::new(&prefix);
    let guest = vhost.url("guest", "guest");
    let sim = start_sim(1, 0);
    let _worker = start_worker(&sim.worker_config, &prefix, &guest, "w-slack");

    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| write_in(dir.path(), name, text);
    let roles = write(
        "roles.yaml",
        &format!(
            "groups:\n  - name: producers\n    roles: [operator]\n    members: [\"amqp:{}\"]\n  \
             - name: approvers\n    roles: [approver]\n    members: [\"slack:U0BOB\"]\n",
            vhost.user
        ),
    );
    let policy = write(
        "policy.yaml",
        "rules:\n  - name: every-change\n    approvals: 1\n    groups: [approvers]\n    ttl_secs: 900\n",
    );
    let (bot_port, api_port) = (free_port(), free_port());
    let config = write(
        "bot.yaml",
        &format!(
            "mode: http\nlisten: 127.0.0.1:{bot_port}\nchannel: C0OPS\nroles: {}\npolicy: {}\n\
             api_url: http://127.0.0.1:{api_port}/api\nhosts: [hv01]\n",
            roles.display(),
            policy.display()
        ),
    );
    let peer = Command::new(python())
        .arg(root().join("tests/peers/slack_approve.py"))
        .args(["--bot", &format!("http://127.0.0.1:{bot_port}/slack")])
        .args(["--secret", SECRET, "--as", "U0BOB"])
        .args(["--recorder-port", &api_port.to_string()])
        .args(["--until", "succeeded", "--timeout", "90"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python peer");
    let _bot = Proc {
        child: Command::new(bin())
            .args(["slack", "--config"])
            .arg(&config)
            .env("AETHERV_AMQP_URL", &guest)
            .env("AETHERV_PREFIX", &prefix)
            .env("SLACK_BOT_TOKEN", "xoxb-outside")
            .env("SLACK_SIGNING_SECRET", SECRET)
            .env_remove("AETHERV_SIGNING_KEY_FILE")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("aetherv slack"),
        name: "aetherv slack".into(),
    };
    // The bot has declared the requests exchange once it serves HTTP.
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", bot_port)).is_err() {
        assert!(Instant::now() < end, "the Slack bot never listened");
        std::thread::sleep(Duration::from_millis(100));
    }

    let request = serde_json::json!({
        "v": 1, "kind": "vm.create", "target": {"host": "hv01"},
        "spec": {"vm_name": "sl01", "target_host": "hv01", "gb_ram": 2, "cpu_cores": 1},
    })
    .to_string();
    let url = vhost.url(&vhost.user, &vhost.password);
    let (mut child, out) = producer(&url, &prefix, &vhost.user, &[&request, "--follow"]);
    out.wait_for("\"awaiting_approval\": true", 0, Duration::from_secs(30));
    out.wait_for("\"status\": \"approved\"", 0, Duration::from_secs(60));
    out.wait_for("event job.succeeded", 0, Duration::from_secs(60));
    assert!(child.wait().expect("producer").success(), "{}", out.text());
    // Only U0BOB may approve (roles), so the approval came from the click in Slack.
    assert!(
        out.text().contains("event approval.granted"),
        "{}",
        out.text()
    );

    let report = peer.wait_with_output().expect("peer output");
    let text = String::from_utf8_lossy(&report.stdout).to_string();
    assert!(
        report.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).expect("report");
    // The approval message went to the configured channel and named the producer.
    let approval = &report["approval"]["body"];
    assert_eq!(approval["channel"], "C0OPS", "{approval}");
    assert!(
        approval
            .to_string()
            .contains(&format!("amqp:{}", vhost.user)),
        "{approval}"
    );
    assert_eq!(report["click"][0], 200, "{}", report["click"]);
    // The VM exists on the simulated host.
    let view = crate::harness::http_get(&sim.addr, "/sim/hosts/hv01").expect("host view");
    assert!(view.contains("\"vm_name\":\"sl01\""), "{view}");
}
