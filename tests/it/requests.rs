//! AMQP producers through the gate: a pika producer with its own RabbitMQ user, allowed to
//! write only to `<prefix>.requests`, asks for jobs; the bot (`aetherv demo` against RabbitMQ,
//! on a throwaway vhost) validates them, asks for approval on the console, and answers the
//! producer; the producer's publish straight to `<prefix>.jobs` is refused by RabbitMQ.

use crate::harness::{amqp_url, bin, python, root};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `rabbitmqctl` (on the broker of `AETHERV_AMQP_URL`'s machine); panics on failure.
fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("rabbitmqctl is needed for this test: {e}"));
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway vhost where `guest` (bot and worker) may do everything and a producer user
/// holds the permissions docs/amqp.md gives producers. Deleted with the user on drop.
pub(crate) struct Vhost {
    name: String,
    pub(crate) user: String,
    pub(crate) password: String,
}

impl Vhost {
    pub(crate) fn new(prefix: &str) -> Vhost {
        let v = Vhost {
            name: format!("{prefix}-vhost"),
            user: format!("{prefix}-producer"),
            password: uuid::Uuid::new_v4().simple().to_string(),
        };
        rabbitmqctl(&["add_vhost", &v.name]);
        rabbitmqctl(&["set_permissions", "-p", &v.name, "guest", ".*", ".*", ".*"]);
        rabbitmqctl(&["add_user", &v.user, &v.password]);
        let p = regex_escape(prefix);
        // configure: its own server-named reply queue; write: the requests exchange (and its
        // reply queue); read: its reply queue and the event stream.
        let configure = "^amq\\.gen-.*$".to_string();
        let write = format!("^({p}\\.requests|amq\\.gen-.*)$");
        let read = format!("^({p}\\.events\\.stream|amq\\.gen-.*)$");
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &v.name,
            &v.user,
            &configure,
            &write,
            &read,
        ]);
        v
    }

    /// The URL for `user:password` on this vhost, from the test broker's URL.
    pub(crate) fn url(&self, user: &str, password: &str) -> String {
        let base = amqp_url();
        let host = base.split('@').nth(1).and_then(|s| s.split('/').next());
        format!(
            "amqp://{user}:{password}@{}/{}",
            host.unwrap_or("127.0.0.1:5672"),
            self.name
        )
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.user])
            .output();
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = ".^$*+?()[]{}|\\-".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// Output of a running process, collected line by line in the background.
#[derive(Clone, Default)]
pub(crate) struct Lines(Arc<Mutex<String>>);

impl Lines {
    pub(crate) fn follow(&self, out: impl std::io::Read + Send + 'static) {
        let buf = Arc::clone(&self.0);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                b.push_str(&line);
                b.push('\n');
            }
        });
    }

    pub(crate) fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for `needle` after byte `from`; its position.
    pub(crate) fn wait_for(&self, needle: &str, from: usize, timeout: Duration) -> usize {
        let end = Instant::now() + timeout;
        loop {
            let text = self.text();
            if let Some(i) = text.get(from..).and_then(|t| t.find(needle)) {
                return from + i;
            }
            assert!(Instant::now() < end, "`{needle}` did not appear:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `aetherv demo` on the vhost with roles and policy of the test, driven line by line.
pub(crate) struct Demo {
    child: Child,
    stdin: Option<ChildStdin>,
    pub(crate) out: Lines,
    /// Where its simulated hosts listen (`GET /sim/hosts/<host>`).
    pub(crate) sim: String,
    _dir: tempfile::TempDir,
}

const POLICY: &str = "\
rules:
  - name: quick
    kinds: [vm.create]
    min: {gb_ram: 8}
    approvals: 1
    groups: [approvers]
    ttl_secs: 2
  - name: every-change
    approvals: 1
    groups: [approvers]
    ttl_secs: 900
";

impl Demo {
    pub(crate) fn start(url: &str, prefix: &str, producer: &str) -> Demo {
        let dir = tempfile::tempdir().expect("tempdir");
        let roles = format!(
            "{}\n  - name: producers\n    roles: [operator]\n    members: [\"amqp:{producer}\"]\n",
            include_str!("../../src/cmd/demo-roles.yaml").trim_end()
        );
        std::fs::write(dir.path().join("roles.yaml"), roles).expect("roles");
        std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
        let sim = format!("127.0.0.1:{}", crate::harness::free_port());
        let mut child = Command::new(bin())
            .args([
                "demo",
                "--hosts",
                "1",
                "--latency-ms",
                "50",
                "--prefix",
                prefix,
            ])
            .arg("--roles")
            .arg(dir.path().join("roles.yaml"))
            .arg("--policy")
            .arg(dir.path().join("policy.yaml"))
            .arg("--attach-dir")
            .arg(dir.path())
            .args(["--sim-listen", &sim])
            .env("AETHERV_AMQP_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn demo");
        let out = Lines::default();
        out.follow(child.stdout.take().expect("stdout"));
        out.follow(child.stderr.take().expect("stderr"));
        let stdin = child.stdin.take();
        let demo = Demo {
            child,
            stdin,
            out,
            sim,
            _dir: dir,
        };
        demo.out.wait_for("Type `help`", 0, Duration::from_secs(30));
        demo
    }

    pub(crate) fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to the demo");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The producer peer, started in the background; its output lines.
pub(crate) fn producer(url: &str, prefix: &str, user: &str, args: &[&str]) -> (Child, Lines) {
    let mut child = Command::new(python())
        .arg(root().join("tests/peers/request_job.py"))
        .args([url, prefix, user])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the producer");
    let lines = Lines::default();
    lines.follow(child.stdout.take().expect("stdout"));
    lines.follow(child.stderr.take().expect("stderr"));
    (child, lines)
}

/// Runs the producer to its end; its output.
pub(crate) fn produce(url: &str, prefix: &str, user: &str, args: &[&str]) -> String {
    let (mut child, lines) = producer(url, prefix, user, args);
    let end = Instant::now() + Duration::from_secs(100);
    while child.try_wait().expect("producer").is_none() {
        assert!(
            Instant::now() < end,
            "the producer hangs:\n{}",
            lines.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    lines.text()
}

fn vm_request(name: &str, gb_ram: u32) -> String {
    serde_json::json!({
        "v": 1,
        "kind": "vm.create",
        "target": {"host": "hv01"},
        "spec": {"vm_name": name, "target_host": "hv01", "gb_ram": gb_ram, "cpu_cores": 1},
    })
    .to_string()
}

/// The short id of the job in the last approval request after `from`.
pub(crate) fn approval_short(demo: &Demo, from: usize) -> (usize, String) {
    let at = demo
        .out
        .wait_for("Approval needed for job ", from, Duration::from_secs(30));
    let text = demo.out.text();
    let short = text[at + "Approval needed for job ".len()..][..8].to_string();
    (at, short)
}

#[test]
fn a_producer_request_is_gated_approved_on_the_console_and_followed_to_its_end() {
    let prefix = crate::harness::prefix();
    let vhost = Vhost::new(&prefix);
    let mut demo = Demo::start(&vhost.url("guest", "guest"), &prefix, &vhost.user);
    let url = vhost.url(&vhost.user, &vhost.password);
    let user = vhost.user.clone();

    // RabbitMQ refuses the producer's publish straight to the jobs exchange.
    let out = produce(&url, &prefix, &user, &["--to-jobs", "hv01"]);
    assert!(out.contains("refused 403"), "{out}");

    // No user_id: refused by the bot, naming the property.
    let out = produce(&url, &prefix, "-", &[&vm_request("web00", 2)]);
    assert!(out.contains("\"field\": \"user_id\""), "{out}");

    // A request that needs approval: accepted, the approval asked on the console.
    let (mut first, first_out) =
        producer(&url, &prefix, &user, &[&vm_request("web01", 2), "--follow"]);
    first_out.wait_for("\"status\": \"accepted\"", 0, Duration::from_secs(30));
    assert!(first_out.text().contains("\"awaiting_approval\": true"));
    let (at, short) = approval_short(&demo, 0);
    assert!(
        demo.out.text()[at..].contains(&format!("requested by amqp:{user}")),
        "{}",
        demo.out.text()
    );

    // A second request for the same new name is refused while the first is pending.
    let out = produce(&url, &prefix, &user, &[&vm_request("web01", 2)]);
    assert!(out.contains("\"status\": \"rejected\""), "{out}");
    assert!(out.contains("\"field\": \"vm_name\""), "{out}");

    // Invalid: a field the form does not know.
    let bad =
        vm_request("web09", 2).replace("\"cpu_cores\":1", "\"cpu_cores\":1,\"colour\":\"red\"");
    let out = produce(&url, &prefix, &user, &[&bad]);
    assert!(out.contains("\"status\": \"rejected\""), "{out}");

    // Approval runs the job; the producer hears it and follows the events to the end.
    demo.say(&format!("bob> approve {short}"));
    first_out.wait_for("\"status\": \"approved\"", 0, Duration::from_secs(30));
    first_out.wait_for("event job.succeeded", 0, Duration::from_secs(60));
    assert!(
        first.wait().expect("producer").success(),
        "{}",
        first_out.text()
    );
    demo.out
        .wait_for("succeeded (vm.create on hv01)", at, Duration::from_secs(30));

    // A rejected approval reaches the producer.
    let (mut second, second_out) = producer(&url, &prefix, &user, &[&vm_request("web02", 2)]);
    let (at, short) = approval_short(&demo, at + 1);
    demo.say(&format!("bob> reject {short} not today"));
    second_out.wait_for(
        "\"status\": \"approval_rejected\"",
        0,
        Duration::from_secs(30),
    );
    assert!(
        second_out.text().contains("\"reason\": \"not today\""),
        "{}",
        second_out.text()
    );
    assert!(second.wait().expect("producer").success());

    // An expired one too (the `quick` rule expires after 2 s).
    let out = produce(&url, &prefix, &user, &[&vm_request("web03", 8)]);
    assert!(out.contains("\"status\": \"approval_expired\""), "{out}");
    approval_short(&demo, at + 1);
}

/// A noop job for `hv01` as a producer would write it, published by a valid RabbitMQ user
/// (the bot's) straight to the jobs exchange.
fn raw_job() -> aetherv_core::JobEnvelope {
    crate::harness::job_envelope(
        aetherv_core::JobKind::Noop,
        aetherv_core::Target::Host("hv01".into()),
        serde_json::Map::new(),
        "guest",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_forged_jobs_are_dead_lettered_unrun_and_malformed_requests_too() {
    use aetherv_broker::{Broker, Headers, StreamOffset, Topology};
    use aetherv_core::signing::SigningKey;
    let prefix = crate::harness::prefix();
    let vhost = Vhost::new(&prefix);
    let guest = vhost.url("guest", "guest");
    let (g, p, u) = (guest.clone(), prefix.clone(), vhost.user.clone());
    let demo = tokio::task::spawn_blocking(move || Demo::start(&g, &p, &u))
        .await
        .expect("demo");
    let broker = Broker::connect(&guest, Topology::new(&prefix))
        .await
        .expect("broker");

    let unsigned = raw_job();
    broker.publish_job(&unsigned).await.expect("publish");
    let forged = raw_job();
    let forger = SigningKey::generate("run-forged").expect("key");
    let headers: Headers = forger
        .sign(&forged)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    broker
        .publish_job_with(&forged, &headers)
        .await
        .expect("publish");
    let Broker::Amqp(amqp) = &broker else {
        panic!("an AMQP broker")
    };
    amqp.publish_request(b"{not json", Some("guest"), None, None)
        .await
        .expect("publish a malformed request");

    let dead = broker
        .dead_letters(3, Duration::from_secs(30))
        .await
        .expect("dead letters");
    let reason_of = |id: aetherv_core::JobId| {
        dead.iter()
            .find(|d| String::from_utf8_lossy(&d.body).contains(&id.to_string()))
            .and_then(|d| d.reason.clone())
    };
    assert_eq!(
        reason_of(unsigned.job_id).as_deref(),
        Some("unsigned"),
        "{dead:?}"
    );
    assert_eq!(
        reason_of(forged.job_id).as_deref(),
        Some("bad_signature"),
        "{dead:?}"
    );
    assert!(
        dead.iter()
            .any(|d| d.reason.as_deref() == Some("malformed_json") && d.body == b"{not json"),
        "{dead:?}"
    );

    // Nothing ran: no event about either job; the malformed request was refused in an event.
    let mut events = broker
        .replay_events(StreamOffset::First)
        .await
        .expect("stream");
    let mut rejected = false;
    while let Ok(Some((_, ev))) = tokio::time::timeout(Duration::from_secs(2), events.next()).await
    {
        assert!(
            ev.job_id != Some(unsigned.job_id) && ev.job_id != Some(forged.job_id),
            "{ev:?}"
        );
        rejected |= ev.type_name() == "request.rejected";
    }
    assert!(rejected, "no request.rejected event");
    broker.close().await;
    drop(demo);
}
