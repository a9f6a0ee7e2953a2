//! The page over real HTTP on the API's router: sign-in with a token (a session cookie, never
//! the token), the view built from the bot's state rebuilt from real events, and a job's log
//! lines streamed as Server-Sent Events while events arrive.

use super::build;
use crate::auth::{BearerToken, Oidc};
use crate::{Api, Authenticator};
use aetherv_bot::state::State;
use aetherv_core::{Event, EventBody, JobId, LogLine, LogStream};
use serde_json::json;
use std::time::Duration;

const TOKEN: &str = "status-page-test-token-0123456789";

/// The bot's state and the API's store, fed the same events.
struct Site {
    state: State,
    api: Api,
    seq: u64,
}

impl Site {
    fn new() -> Site {
        let auth = Authenticator::new(vec![BearerToken::from_plain("ci", TOKEN)], Oidc::Off);
        let (api, _calls) = Api::new(auth);
        Site {
            state: State::new(aetherv_bot::thread::DEFAULT_LIMITS),
            api,
            seq: 0,
        }
    }

    fn apply(&mut self, ev: &Event) {
        self.state.apply(ev, false);
        self.api.store.record(ev);
        self.api.store.refresh(&self.state);
    }

    fn job(&mut self, job: JobId, body: EventBody) {
        self.seq += 1;
        self.apply(&Event::for_job(job, self.seq, body));
    }

    fn log(&mut self, job: JobId, lines: &[&str]) {
        let lines = lines
            .iter()
            .map(|t| LogLine {
                stream: LogStream::Stdout,
                text: (*t).into(),
            })
            .collect();
        self.job(job, EventBody::JobLog { lines });
    }
}

fn busy_site() -> (Site, JobId, JobId) {
    let mut site = Site::new();
    site.apply(&Event::for_host(
        0,
        EventBody::HostInventory {
            host: "hv01".into(),
            reachable: true,
            inventory: json!({"host": {"total_memory_gb": 128, "memory_in_use_gb": 8}, "vms": [
                {"vm_name": "<img src=x onerror=alert(1)>", "vm_id": "5f1c", "state": "Running",
                 "cpu_cores": 2, "memory_gb": 8}
            ]}),
            error: None,
        },
    ));
    let (a, b) = (JobId::new(), JobId::new());
    for j in [a, b] {
        site.job(
            j,
            EventBody::JobQueued {
                target: "hv01".into(),
                kind: "vm.create".into(),
            },
        );
    }
    site.job(
        a,
        EventBody::JobStarted {
            host: "hv01".into(),
            worker: "w1".into(),
            attempt: 1,
        },
    );
    site.job(
        a,
        EventBody::StepStarted {
            step: "vm.create".into(),
            index: 1,
            total: 1,
        },
    );
    site.log(a, &["creating the VM", "</pre><script>alert(2)</script>"]);
    (site, a, b)
}

#[test]
fn the_view_has_the_slot_the_queue_and_the_log() {
    let (site, a, b) = busy_site();
    let v = build::from_store(&site.api.store, "api:ci", chrono::Utc::now());
    assert_eq!(v.hosts.len(), 1);
    let h = &v.hosts[0];
    assert_eq!((h.name.as_str(), h.state.as_str()), ("hv01", "up"));
    assert_eq!(
        (h.free_memory_gb, h.total_memory_gb),
        (Some(120), Some(128))
    );
    assert_eq!(h.vms[0].name, "<img src=x onerror=alert(1)>");
    let running = h.running.as_ref().expect("running job");
    assert_eq!(running.id, a.to_string());
    assert_eq!(running.step.as_deref(), Some("1/1 vm.create"));
    assert_eq!(h.queue.len(), 1);
    assert_eq!(
        (h.queue[0].position, h.queue[0].job.id.clone()),
        (1, b.to_string())
    );
    let line = v
        .jobs
        .iter()
        .find(|j| j.job.id == a.to_string())
        .expect("recent job");
    assert_eq!(
        line.log,
        ["creating the VM", "</pre><script>alert(2)</script>"]
    );
    assert!(line.live && line.log_after > 0);
}

async fn serve(api: &Api) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = api.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test]
async fn signing_in_sets_an_http_only_strict_session_cookie_not_the_token() {
    let (site, a, b) = busy_site();
    let base = serve(&site.api).await;
    let http = client();

    let r = http.get(format!("{base}/")).send().await.expect("page");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let r = http
        .get(format!("{base}/status/fragment"))
        .send()
        .await
        .expect("fragment");
    assert_eq!(r.status(), 401);

    let r = http
        .post(format!("{base}/login"))
        .form(&[("token", "wrong-token")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(!r.text().await.expect("body").contains("wrong-token"));

    let r = http
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().expect("text").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "{cookie}");
    let session = cookie.split(';').next().expect("pair").to_owned();

    let r = http
        .get(format!("{base}/"))
        .header("cookie", &session)
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = r.text().await.expect("body");
    for needle in [
        "signed in as <b id=\"user\">api:ci</b>".to_string(),
        format!("class=\"running-job\" data-job=\"{a}\""),
        format!("class=\"queued-job\" data-job=\"{b}\" data-position=\"1\""),
        "120 GB free of 128 GB".to_string(),
        "&lt;img src=x onerror=alert(1)&gt;".to_string(),
        "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;".to_string(),
    ] {
        assert!(html.contains(&needle), "missing {needle} in {html}");
    }
    assert!(!html.contains("<img") && !html.contains("<script>alert"));
    assert!(!html.contains(TOKEN));

    let js = http
        .get(format!("{base}/status/static/status.js"))
        .send()
        .await
        .expect("script");
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );

    let r = http
        .post(format!("{base}/logout"))
        .header("cookie", &session)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 303);
    let r = http
        .get(format!("{base}/"))
        .header("cookie", &session)
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 303, "the session ended");
}

/// Reads SSE messages (`event`, `id`, `data`) from a response until `n` arrived.
async fn sse_messages(mut r: reqwest::Response, n: usize) -> Vec<(String, String, String)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let read = async {
        while let Some(chunk) = r.chunk().await.expect("chunk") {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let msg: String = buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), Vec::new());
                for line in msg.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.into();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.into();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_owned());
                    }
                }
                if !event.is_empty() {
                    out.push((event, id, data.join("\n")));
                }
                if out.len() == n {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the stream delivered in time");
    out
}

#[tokio::test]
async fn a_jobs_log_streams_as_it_grows_and_ends_with_the_job() {
    let (mut site, a, _b) = busy_site();
    let base = serve(&site.api).await;
    let http = client();
    let url = format!("{base}/status/jobs/{a}/log?after=0");

    let r = http.get(&url).send().await.expect("stream");
    assert_eq!(r.status(), 401, "signed-in users only");

    let r = http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("stream");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let store = site.api.store.clone();
    let later = tokio::spawn(async move { sse_messages(r, 3).await });
    // New lines, then the end of the job, while the stream is open.
    tokio::time::sleep(Duration::from_millis(200)).await;
    site.log(a, &["disk attached"]);
    site.job(
        a,
        EventBody::JobSucceeded {
            result: json!({"vm_id": "5f1c"}),
        },
    );
    let got = later.await.expect("reader");
    assert_eq!(got[0].0, "log");
    assert_eq!(got[0].2, "creating the VM\n</pre><script>alert(2)</script>");
    assert_eq!(
        (got[1].0.as_str(), got[1].2.as_str()),
        ("log", "disk attached")
    );
    assert_eq!(got[2].0, "end");
    drop(store);

    // Resumed after the first message: only what came later.
    let r = http
        .get(&url)
        .bearer_auth(TOKEN)
        .header("last-event-id", &got[0].1)
        .send()
        .await
        .expect("stream");
    let again = sse_messages(r, 2).await;
    assert_eq!(again[0].2, "disk attached");
    assert_eq!(again[1].0, "end");

    let r = http
        .get(format!("{base}/status/jobs/{}/log", JobId::new()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("stream");
    assert_eq!(r.status(), 404);
}
