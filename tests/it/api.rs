//! The HTTP API's harness: `aetherv api --simulated N` against real RabbitMQ (the bot, an
//! in-process worker and simulated hosts over WinRM, the console on its stdin for approvals),
//! spoken to over real HTTP with reqwest. Every body the tests read is kept, so a test can
//! scan all of them (and the process's output) for secrets.

use crate::harness::{amqp_url, bin, free_port, prefix};
use crate::requests::Lines;
use serde_json::Value;
use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The admin token (`AETHERV_API_TOKEN`, principal `api:admin`).
pub(crate) const ADMIN: &str = "admin-token-0b8e4f";
/// A reader's token (`api:auditor`, in the readers group).
pub(crate) const READER: &str = "reader-token-5c1d9a";

/// The roles of the tests' site: the simulated site's, and `api:auditor` as a reader.
fn roles() -> String {
    format!(
        "{}\n  - name: api-readers\n    roles: [reader]\n    members: [\"api:auditor\"]\n",
        include_str!("../../src/cmd/api-roles.yaml").trim_end()
    )
}

/// A running `aetherv api --simulated`.
pub(crate) struct ApiSite {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its stdout and stderr.
    pub(crate) out: Lines,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    /// Where the simulated hosts answer `GET /sim/hosts/<host>`.
    pub(crate) sim: String,
    url: String,
    prefix: String,
    hosts: Vec<String>,
    http: reqwest::Client,
    /// Every response body read so far.
    pub(crate) bodies: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// One response.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl Resp {
    /// The body as JSON (`null` when it is not).
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

impl ApiSite {
    /// Starts the site with `hosts` simulated hosts; waits until the API leads.
    pub(crate) async fn start(hosts: usize) -> ApiSite {
        let site = ApiSite::spawn(hosts, prefix()).await;
        site.wait_ready().await;
        site
    }

    /// A second bot on `leader`'s prefix: a standby (it listens, but does not lead).
    pub(crate) async fn standby(leader: &ApiSite) -> ApiSite {
        let site = ApiSite::spawn(leader.hosts.len(), leader.prefix.clone()).await;
        site.out
            .wait_for("listening on http://", 0, Duration::from_secs(30));
        site
    }

    /// Stops this bot and starts another on the same prefix (its state comes from the event
    /// stream); waits until it leads.
    pub(crate) async fn restart(self) -> ApiSite {
        let (hosts, prefix) = (self.hosts.len(), self.prefix.clone());
        self.kill();
        let site = ApiSite::spawn(hosts, prefix).await;
        site.wait_ready().await;
        site
    }

    async fn spawn(hosts: usize, prefix: String) -> ApiSite {
        let url = amqp_url();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("roles.yaml"), roles()).expect("roles");
        let config = format!(
            "api:\n  tokens:\n    - name: auditor\n      sha256: {}\n",
            sha256_hex(READER)
        );
        std::fs::write(dir.path().join("aetherv.yaml"), config).expect("config");
        let port = free_port();
        let sim = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(bin())
            .args(["api", "--simulated", &hosts.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--sim-listen", &sim, "--latency-ms", "50"])
            .arg("--roles")
            .arg(dir.path().join("roles.yaml"))
            .arg("--config")
            .arg(dir.path().join("aetherv.yaml"))
            .env("AETHERV_AMQP_URL", &url)
            .env("AETHERV_PREFIX", &prefix)
            .env("AETHERV_API_TOKEN", ADMIN)
            .env("AETHERV_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn aetherv api");
        let out = Lines::default();
        out.follow(child.stdout.take().expect("stdout"));
        out.follow(child.stderr.take().expect("stderr"));
        let stdin = child.stdin.take();
        let site = ApiSite {
            child,
            stdin,
            out,
            base: format!("http://127.0.0.1:{port}"),
            sim,
            url,
            prefix,
            hosts: (1..=hosts).map(|i| format!("hv{i:02}")).collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            bodies: Arc::default(),
            _dir: dir,
        };
        site
    }

    /// Waits until the API leads and every host's first inventory is in.
    async fn wait_ready(&self) {
        let site = self;
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = site
                .http
                .get(format!("{}/readyz", site.base))
                .send()
                .await
                .map(|r| r.status().as_u16());
            // Ready, and the first inventory of every host is in.
            if ready.ok() == Some(200) {
                let hosts = site.get("/api/v1/hosts", Some(ADMIN)).await.json();
                let up = hosts["hosts"]
                    .as_array()
                    .is_some_and(|h| h.iter().all(|h| h["status"] == "up"));
                if up {
                    break;
                }
            }
            assert!(
                Instant::now() < end,
                "the API did not become ready:\n{}",
                site.out.text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every event on the site's event stream, as JSON text (for secret scans).
    pub(crate) async fn stream_text(&self) -> String {
        let broker = crate::harness::test_broker(&self.url, &self.prefix).await;
        let mut events = broker
            .replay_events(aetherv_broker::StreamOffset::First)
            .await
            .expect("replay");
        let mut text = String::new();
        while let Ok(Some((_, ev))) =
            tokio::time::timeout(Duration::from_secs(2), events.next()).await
        {
            text.push_str(&serde_json::to_string(&ev).unwrap_or_default());
            text.push('\n');
        }
        broker.close().await;
        text
    }

    /// A request; `token` as the bearer token.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("http request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = resp.text().await.expect("body");
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text.clone());
        Resp {
            status,
            content_type,
            headers,
            text,
        }
    }

    /// POSTs a raw body as admin; the status.
    pub(crate) async fn http_raw(&self, path: &str, body: &str) -> u16 {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(body.to_string())
            .send()
            .await
            .expect("http request");
        r.status().as_u16()
    }

    /// GET.
    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(reqwest::Method::GET, path, token, None, &[])
            .await
    }

    /// POST as admin.
    pub(crate) async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(reqwest::Method::POST, path, Some(ADMIN), Some(&body), &[])
            .await
    }

    /// POSTs as admin and expects `202` with a job; its id.
    pub(crate) async fn accepted(&self, path: &str, body: Value) -> String {
        let r = self.post(path, body).await;
        assert_eq!(r.status, 202, "{path}: {}", r.text);
        let id = r.json()["job_id"].as_str().expect("job_id").to_string();
        assert_eq!(
            r.headers.get("location").and_then(|v| v.to_str().ok()),
            Some(format!("/api/v1/jobs/{id}").as_str())
        );
        id
    }

    /// Polls a job until it is final; the job document. Panics unless it is `want`.
    pub(crate) async fn finished(&self, job: &str, want: &str) -> Value {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.get(&format!("/api/v1/jobs/{job}"), Some(ADMIN)).await;
            assert_eq!(r.status, 200, "{}", r.text);
            let doc = r.json();
            let state = doc["state"].as_str().unwrap_or_default().to_string();
            if ["succeeded", "failed", "cancelled", "rejected", "expired"].contains(&state.as_str())
            {
                assert_eq!(state, want, "job {job}: {doc:#}");
                return doc;
            }
            assert!(Instant::now() < end, "job {job} did not finish: {doc:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `path` until it answers `status`.
    pub(crate) async fn until_status(&self, path: &str, status: u16) -> Resp {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.get(path, Some(ADMIN)).await;
            if r.status == status {
                return r;
            }
            assert!(
                Instant::now() < end,
                "{path} stayed {}: {}",
                r.status,
                r.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The simulated host's state (`GET /sim/hosts/<host>`).
    pub(crate) fn host_state(&self, host: &str) -> Value {
        let body = crate::harness::http_get(&self.sim, &format!("/sim/hosts/{host}"))
            .expect("sim host state");
        serde_json::from_str(&body).expect("sim json")
    }

    /// The VM named `name` on the simulated host, if any.
    pub(crate) fn sim_vm(&self, host: &str, name: &str) -> Option<Value> {
        self.host_state(host)["vms"]
            .as_array()?
            .iter()
            .find(|v| v["vm_name"] == name)
            .cloned()
    }

    /// Types a console line (e.g. `bob> approve ID`).
    pub(crate) fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to the console");
    }

    /// Stops the process, leaving what it declared (another process shares it).
    pub(crate) fn kill(mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process and deletes what it declared on RabbitMQ.
    pub(crate) async fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::harness::cleanup(&self.url, &self.prefix, &self.hosts).await;
    }
}

impl Drop for ApiSite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SHA-256 hex of a token (what `api.tokens[].sha256` holds).
pub(crate) fn sha256_hex(token: &str) -> String {
    aetherv_api::auth::sha256_hex(token)
}
