//! The gate and the worker's preflight seen from outside, on the throwaway vhost of
//! [`crate::requests`]: a doomed deployment over AMQP is refused before approval and creates
//! nothing on the simulated host; a VM deleted on the host while its job waited for approval
//! fails the worker's preflight before any step; a second request for a pending new name is
//! refused in chat. `aetherv submit` is the producer of the last check, with the producer's
//! own RabbitMQ user.

use crate::harness::{bin, http_get, prefix};
use crate::requests::{approval_short, produce, Demo, Vhost};
use aetherv_core::{AgentOperation, AgentRequest};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The names of the VMs on `host` of the demo's simulated site.
fn vms(demo: &Demo, host: &str) -> Vec<String> {
    let body = http_get(&demo.sim, &format!("/sim/hosts/{host}")).expect("host view");
    let view: Value = serde_json::from_str(&body).expect("json");
    let mut names: Vec<String> = view["vms"]
        .as_array()
        .map(|vms| {
            vms.iter()
                .filter_map(|v| v["vm_name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Asks `line` on the console until its answer (after the question) contains `needle`.
fn ask_until(demo: &mut Demo, line: &str, needle: &str) {
    let end = Instant::now() + Duration::from_secs(40);
    loop {
        let from = demo.out.text().len();
        demo.say(line);
        std::thread::sleep(Duration::from_millis(700));
        if demo.out.text()[from..].contains(needle) {
            return;
        }
        assert!(
            Instant::now() < end,
            "`{line}` never answered `{needle}`:\n{}",
            demo.out.text()
        );
    }
}

/// One agent operation on the demo's simulated `hv01`, out of band (as an administrator on
/// the host would act, not through a job).
fn on_host(demo: &Demo, op: AgentOperation, spec: &Value) {
    use aetherv_winrm::{Auth, ClientConfig, WinrmClient};
    let client = WinrmClient::new(ClientConfig::new(
        format!("http://{}/hv01/wsman", demo.sim),
        Auth::Basic {
            username: aetherv_sim::config::DEFAULT_USERNAME.into(),
            password: aetherv_sim::config::DEFAULT_PASSWORD.into(),
        },
    ))
    .expect("winrm client");
    let agent = aetherv_worker::HostAgent::new(
        "hv01",
        client,
        aetherv_core::contract::command::DEFAULT_INSTALL_DIR,
        Duration::from_secs(30),
    );
    let spec = spec.as_object().cloned().unwrap_or_default();
    let req = AgentRequest::new(op, spec, "out-of-band");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let result = rt
        .block_on(agent.call(
            &req,
            &tokio_util::sync::CancellationToken::new(),
            &mut |_| {},
        ))
        .expect("the host answers");
    assert!(result.is_ok(), "{op}: {}", result.message);
}

fn deployment(name: &str, network: &str) -> String {
    json!({
        "v": 1,
        "kind": "deployment.managed",
        "target": {"host": "hv01"},
        "spec": {
            "vm_name": name, "target_host": "hv01", "gb_ram": 2, "cpu_cores": 1,
            "image_name": "Windows Server 2022", "network": network, "guest_la_uid": "admin",
        },
    })
    .to_string()
}

#[test]
fn doomed_requests_are_refused_before_approval_and_create_nothing() {
    let prefix = prefix();
    let vhost = Vhost::new(&prefix);
    let mut demo = Demo::start(&vhost.url("guest", "guest"), &prefix, &vhost.user);
    let url = vhost.url(&vhost.user, &vhost.password);
    ask_until(&mut demo, "eve> hosts", "hv01  up");
    let before = vms(&demo, "hv01");

    // Over AMQP (the pika producer): refused, naming the network; no approval is asked.
    let out = produce(&url, &prefix, &vhost.user, &[&deployment("nn01", "nonet")]);
    assert!(out.contains("\"status\": \"rejected\""), "{out}");
    assert!(out.contains("\"field\": \"network\""), "{out}");
    // Through `aetherv submit`: the same refusal, every field error listed, exit 1.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("nn.json");
    std::fs::write(&file, deployment("nn02", "nonet")).expect("write");
    let (st, stdout, stderr) = crate::harness::run_cmd(
        Command::new(bin())
            .arg("submit")
            .arg(&file)
            .env("AETHERV_AMQP_URL", &url)
            .env("AETHERV_PREFIX", &prefix),
    );
    assert!(!st.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("network (unknown_choice)") && stdout.contains("rejected"),
        "{stdout}\n{stderr}"
    );
    assert!(
        !demo.out.text().contains("Approval needed"),
        "{}",
        demo.out.text()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(vms(&demo, "hv01"), before, "something was created on hv01");

    // In chat: a second request for a new name is refused while the first is pending.
    demo.say("alice> deploy vm vm_name=dup01 target_host=hv01 gb_ram=2 cpu_cores=1");
    let (at, _) = approval_short(&demo, 0);
    demo.say("alice> deploy vm vm_name=dup01 target_host=hv01 gb_ram=2 cpu_cores=1");
    demo.out.wait_for(
        "vm_name: dup01 is claimed on hv01 by job",
        at,
        Duration::from_secs(30),
    );
    assert_eq!(
        demo.out.text().matches("Approval needed").count(),
        1,
        "{}",
        demo.out.text()
    );
}

#[test]
fn a_vm_deleted_while_its_job_waited_for_approval_fails_the_preflight_before_any_step() {
    let prefix = prefix();
    let vhost = Vhost::new(&prefix);
    let mut demo = Demo::start(&vhost.url("guest", "guest"), &prefix, &vhost.user);
    let url = vhost.url(&vhost.user, &vhost.password);
    on_host(
        &demo,
        AgentOperation::VmCreate,
        &json!({"vm_name": "pf01", "gb_ram": 1, "cpu_cores": 1}),
    );
    ask_until(&mut demo, "eve> vm list", "pf01");

    // The producer asks for the delete through the gate and follows it.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("delete.yaml");
    std::fs::write(
        &file,
        "kind: vm.delete\ntarget: hv01\nspec: {vm_name: pf01}\n",
    )
    .expect("write");
    let mut submit = Command::new(bin())
        .args(["submit", "--follow", "--timeout", "90"])
        .arg(&file)
        .env("AETHERV_AMQP_URL", &url)
        .env("AETHERV_PREFIX", &prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("aetherv submit");
    let out = crate::requests::Lines::default();
    out.follow(submit.stdout.take().expect("stdout"));
    out.follow(submit.stderr.take().expect("stderr"));
    out.wait_for(
        "accepted, awaiting approval: job ",
        0,
        Duration::from_secs(30),
    );
    let (_, short) = approval_short(&demo, 0);

    // Meanwhile someone deletes the VM on the host; then the approver approves.
    on_host(&demo, AgentOperation::VmDelete, &json!({"vm_name": "pf01"}));
    demo.say(&format!("bob> approve {short}"));
    out.wait_for("approved: job ", 0, Duration::from_secs(30));
    out.wait_for("job failed: ", 0, Duration::from_secs(60));
    let status = submit.wait().expect("submit");
    let text = out.text();
    assert!(!status.success(), "{text}");
    assert!(text.contains("job.started"), "{text}");
    assert!(
        text.contains("\"code\":\"preflight\"") && text.contains("vm_name (not_found)"),
        "{text}"
    );
    assert!(!text.contains("step.started"), "{text}");
    assert!(!vms(&demo, "hv01").contains(&"pf01".to_string()));
}
