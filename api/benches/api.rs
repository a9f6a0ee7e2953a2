//! The API under load over real HTTP: `GET /api/v1/jobs/{id}` and `POST /api/v1/resources/vms`
//! (to its `202 Accepted`) from 200 concurrent clients against `aetherv api --simulated 2`
//! (in-process broker, simulated hosts, a worker). Prints latency percentiles and throughput.
//!
//! `cargo bench -p aetherv-api --bench api` (builds and uses `target/release/aetherv`, or the
//! binary in `AETHERV_BIN`). `AETHERV_BENCH_CLIENTS`, `AETHERV_BENCH_GETS`,
//! `AETHERV_BENCH_POSTS` change the load (defaults 200, 20000, 4000).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server, stopped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("AETHERV_BIN") {
        return p.into();
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-q", "--bin", "aetherv"])
        .current_dir(&root)
        .status()
        .expect("cargo build");
    assert!(status.success(), "building aetherv failed");
    std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("release/aetherv")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Stats {
    name: &'static str,
    took: Duration,
    lat: Vec<Duration>,
    errors: usize,
}

impl Stats {
    fn print(&mut self) {
        self.lat.sort();
        let pct = |p: f64| -> f64 {
            if self.lat.is_empty() {
                return 0.0;
            }
            let i = ((self.lat.len() as f64 * p).ceil() as usize).clamp(1, self.lat.len()) - 1;
            self.lat[i].as_secs_f64() * 1000.0
        };
        println!(
            "{:<28} n={:<6} errors={:<3} {:>8.0} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
            self.name,
            self.lat.len(),
            self.errors,
            self.lat.len() as f64 / self.took.as_secs_f64(),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(1.0),
        );
    }
}

/// `total` requests from `clients` concurrent clients, each one after another; `make` builds
/// request `i`; `ok` is the status expected.
async fn run<F>(name: &'static str, clients: usize, total: usize, ok: u16, make: F) -> Stats
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (make, next) = (Arc::clone(&make), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                match make(i).send().await {
                    Ok(r) if r.status().as_u16() == ok => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    Ok(r) => {
                        if errors < 3 {
                            eprintln!(
                                "{name}: {} {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            );
                        }
                        errors += 1;
                    }
                    Err(e) => {
                        if errors < 3 {
                            eprintln!("{name}: {e}");
                        }
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut stats = Stats {
        name,
        took: Duration::ZERO,
        lat: Vec::with_capacity(total),
        errors: 0,
    };
    for t in tasks {
        let (lat, errors) = t.await.expect("client task");
        stats.lat.extend(lat);
        stats.errors += errors;
    }
    stats.took = started.elapsed();
    stats
}

fn vm_body(name: &str) -> serde_json::Value {
    serde_json::json!({"values": {
        "vm_name": name, "gb_ram": 1, "cpu_cores": 1, "target_host": "hv01",
    }})
}

fn main() {
    let clients = env_usize("AETHERV_BENCH_CLIENTS", 200);
    let gets = env_usize("AETHERV_BENCH_GETS", 20_000);
    let posts = env_usize("AETHERV_BENCH_POSTS", 4_000);
    let bin = binary();
    let port = free_port();
    let token = format!("bench-{}", std::process::id());
    let server = Server(
        Command::new(&bin)
            .args(["api", "--simulated", "2", "--latency-ms", "5"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("AETHERV_API_TOKEN", &token)
            .env("AETHERV_AMQP_URL", "")
            .env("AETHERV_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aetherv api"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http.get(format!("{base}/readyz")).send().await;
            if matches!(&ready, Ok(r) if r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "aetherv api never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let auth = format!("Bearer {token}");
        let first = http
            .post(format!("{base}/api/v1/resources/vms"))
            .header("authorization", &auth)
            .json(&vm_body("bench-seed"))
            .send()
            .await
            .expect("seed post");
        assert_eq!(first.status().as_u16(), 202, "{:?}", first.text().await);
        let seed: serde_json::Value = first.json().await.expect("accepted json");
        let job = seed["job_id"].as_str().expect("job_id").to_owned();
        println!(
            "aetherv api --simulated 2 at {base}; {clients} concurrent clients; one machine, \
             client and server share its cores"
        );

        let (h, a, b) = (http.clone(), auth.clone(), base.clone());
        let url = format!("{b}/api/v1/jobs/{job}");
        // Warm-up: connections opened, caches hot.
        run("warm-up", clients, clients * 5, 200, {
            let (h, a, url) = (h.clone(), a.clone(), url.clone());
            move |_| h.get(&url).header("authorization", &a)
        })
        .await;
        run("GET /api/v1/jobs/{id}", clients, gets, 200, {
            let (h, a, url) = (h.clone(), a.clone(), url.clone());
            move |_| h.get(&url).header("authorization", &a)
        })
        .await
        .print();
        let run_id = std::process::id();
        run("POST /api/v1/resources/vms", clients, posts, 202, {
            let (h, a, b) = (h.clone(), a.clone(), b.clone());
            move |i| {
                h.post(format!("{b}/api/v1/resources/vms"))
                    .header("authorization", &a)
                    .json(&vm_body(&format!("bench-{run_id}-{i}")))
            }
        })
        .await
        .print();
    });
    drop(server);
}
