//! `aetherv api`: the bot with the HTTP API as one more front door, and the console chat
//! (stdin/stdout) where approvals of API requests are given. `--config aetherv.yaml` runs it
//! against RabbitMQ with the `bot` section's roles and policy and the `api` section's listen
//! address, tokens (name + SHA-256) and OIDC settings; `--simulated N` runs it on a simulated
//! site (N simulated hosts and a worker in this process; an in-process broker, or RabbitMQ
//! when `AETHERV_AMQP_URL` is set), where the token in `AETHERV_API_TOKEN` is `api:admin`.
use crate::cmd::{amqp_url, env_lookup, topology};
use aetherv_api::{Api, Authenticator, BearerToken, Oidc, OidcSettings};
use aetherv_bot::engine::{Engine, EngineConfig};
use aetherv_broker::Broker;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The simulated site's roles: the demo's users, and `api:admin` (`AETHERV_API_TOKEN`).
pub const SIM_ROLES: &str = include_str!("api-roles.yaml");

/// The simulated site's policy: VMs of 64 GB or more need one approval; the rest runs.
pub const SIM_POLICY: &str = include_str!("api-policy.yaml");

/// Where the API listens without `--listen` or `api.listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// An `aetherv.yaml`: `bot` (roles, policy, hosts) and `api` (listen, tokens, oidc).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run on a simulated site with this many hosts (hv01…).
    #[arg(long, value_name = "HOSTS")]
    pub simulated: Option<usize>,
    /// Where the API listens (default `api.listen`, else 127.0.0.1:8080).
    #[arg(long, env = "AETHERV_API_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// A roles file (default `bot.roles`; on a simulated site the built-in one).
    #[arg(long)]
    pub roles: Option<PathBuf>,
    /// An approval policy file (default `bot.policy`; on a simulated site the built-in one).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The console user before any `/as` (approvals are typed as `bob> approve ID`).
    #[arg(long, default_value = "bob")]
    pub user: String,
    /// Where the simulated hosts listen (`GET /sim/hosts/<host>` there).
    #[arg(long, value_name = "ADDR")]
    pub sim_listen: Option<String>,
    /// Simulated time per agent operation, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub latency_ms: u64,
}

fn read(p: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The `api` section's tokens and OIDC settings.
fn authenticator(api: &Map<String, Value>, simulated: bool) -> Result<Authenticator, String> {
    let mut tokens = Vec::new();
    if let Some(list) = api.get("tokens").and_then(Value::as_array) {
        for t in list {
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            let hash = t.get("sha256").and_then(Value::as_str).unwrap_or_default();
            if name.trim().is_empty() {
                return Err("api.tokens: every token needs a name".into());
            }
            tokens.push(BearerToken::from_hex(name.trim(), hash)?);
        }
    }
    if simulated {
        if let Some(t) = env_lookup("AETHERV_API_TOKEN").filter(|t| !t.trim().is_empty()) {
            tokens.push(BearerToken::from_plain("admin", t.trim()));
        }
    }
    let oidc = match api.get("oidc").and_then(Value::as_object) {
        None => Oidc::Off,
        Some(o) => {
            let s = |k: &str| o.get(k).and_then(Value::as_str).map(String::from);
            Oidc::Unavailable(OidcSettings {
                issuer: s("issuer").unwrap_or_default(),
                audience: s("audience").unwrap_or_default(),
                jwks_file: s("jwks_file").map(PathBuf::from),
                jwks_url: s("jwks_url"),
                roles_claim: s("roles_claim").unwrap_or_else(|| "roles".into()),
            })
        }
    };
    Ok(Authenticator::new(tokens, oidc))
}

/// What the command runs with.
struct Setup {
    cfg: EngineConfig,
    auth: Authenticator,
    listen: String,
    hosts: Vec<String>,
    identity: Option<aetherv_core::secrets::Identity>,
}

fn setup(args: &Args) -> Result<Setup, String> {
    let (bot, api) = match &args.config {
        Some(path) => match crate::cmd::config::Unified::load(path, &env_lookup)? {
            Some(u) => (u.section("bot"), u.section("api")),
            None => return Err(format!("{}: not an aetherv.yaml", path.display())),
        },
        None => (Map::new(), Map::new()),
    };
    let simulated = args.simulated.is_some();
    let file = |flag: &Option<PathBuf>, key: &str, builtin: &str| -> Result<String, String> {
        match flag
            .clone()
            .or_else(|| bot.get(key).and_then(Value::as_str).map(PathBuf::from))
        {
            Some(p) => read(&p),
            None if simulated => Ok(builtin.to_owned()),
            None => Err(format!(
                "no {key} file: give --{key} or bot.{key} in --config"
            )),
        }
    };
    let roles = file(&args.roles, "roles", SIM_ROLES)?;
    let policy = file(&args.policy, "policy", SIM_POLICY)?;
    let (hosts, identity, recipients) = match args.simulated {
        Some(n) => {
            let hosts: Vec<String> = (1..=n.clamp(1, 99)).map(|i| format!("hv{i:02}")).collect();
            let identity = aetherv_core::secrets::generate_identity();
            let recipient = identity.to_public().to_string();
            (hosts, Some(identity), recipient)
        }
        None => {
            let hosts = bot
                .get("hosts")
                .and_then(Value::as_array)
                .map(|h| {
                    h.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let recipients = env_lookup("AETHERV_AGE_RECIPIENTS").unwrap_or_default();
            (hosts, None, recipients)
        }
    };
    let mut cfg = EngineConfig::from_texts(&roles, &policy, hosts.clone(), &recipients)?;
    cfg.channel = "api".into();
    cfg.signer = if simulated {
        Some(crate::cmd::run_signing_key()?)
    } else {
        crate::cmd::configured_signing_key()?
    };
    let listen = args
        .listen
        .clone()
        .or_else(|| api.get("listen").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    Ok(Setup {
        cfg,
        auth: authenticator(&api, simulated)?,
        listen,
        hosts,
        identity,
    })
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    let s = match setup(&args) {
        Ok(s) => s,
        Err(e) => return crate::cmd::fail("api", 64, e),
    };
    let rt = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = rt.block_on(serve(args, s));
    // The console's stdin is read on a blocking thread that a signal does not end: do not
    // wait for it.
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn serve(args: Args, s: Setup) -> ExitCode {
    let simulated = args.simulated.is_some();
    let prefix = env_lookup("AETHERV_PREFIX").unwrap_or_else(|| {
        if simulated {
            format!("api-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        } else {
            "aetherv".into()
        }
    });
    let url = env_lookup("AETHERV_AMQP_URL").filter(|u| !u.is_empty());
    let broker = match (simulated, url) {
        (true, None) => Broker::in_process(topology(&prefix)),
        (_, url) => {
            let url = url.unwrap_or_else(amqp_url);
            match Broker::connect(&url, topology(&prefix)).await {
                Ok(b) => b,
                Err(e) => {
                    let e = aetherv_core::error_chain(&e);
                    return crate::cmd::fail("api", 1, format!("cannot reach RabbitMQ: {e}"));
                }
            }
        }
    };
    let stop = CancellationToken::new();
    tokio::spawn(crate::cmd::signal::on_shutdown(stop.clone()));
    let site_stop = CancellationToken::new();
    let mut worker = None;
    if let Some(identity) = &s.identity {
        let text = aetherv_core::secrets::identity_text(identity).to_string();
        let mut site = aetherv_worker::simulated::Site::demo(
            s.hosts.len(),
            Duration::from_millis(args.latency_ms),
            text,
        );
        site.job_signing_keys = s.cfg.signer.iter().map(|k| k.public_text()).collect();
        site.listen = args.sim_listen.clone();
        site.inventory_interval_secs = Some(2);
        match aetherv_worker::simulated::start_site(&broker, site, &site_stop).await {
            Ok(t) => worker = Some(t),
            Err(e) => {
                return crate::cmd::fail("api", 1, format!("the simulated site did not start: {e}"))
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(&s.listen).await {
        Ok(l) => l,
        Err(e) => return crate::cmd::fail("api", 1, format!("cannot listen on {}: {e}", s.listen)),
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| s.listen.clone());
    // apiweb: an `api.oidc` section gets the OIDC verifier (its key set read once at start).
    let auth = match aetherv_api::oidc::attach(s.auth).await {
        Ok(a) => a,
        Err(e) => return crate::cmd::fail("api", 64, e.to_string()),
    };
    let (api, calls) = Api::new(auth);
    let http = tokio::spawn(aetherv_api::serve(
        listener,
        api.router(),
        stop.child_token(),
    ));
    let health = match crate::cmd::health::start(
        crate::cmd::health::bot_ready(broker.clone()),
        stop.child_token(),
    )
    .await
    {
        Ok(h) => h,
        Err(e) => return crate::cmd::fail("api", 64, e),
    };
    let on = if simulated {
        format!("a simulated site ({})", s.hosts.join(", "))
    } else {
        crate::cmd::worker::redact_url(&amqp_url())
    };
    tracing::info!(target: "aetherv::start", %prefix, api = %bound, "aetherv api serving http://{bound}/api/v1 on {on} (prefix {prefix}); approvals on the console; health: {health}");
    println!(
        "aetherv api: listening on http://{bound} (hosts {})",
        s.hosts.join(", ")
    );
    let code = match run_loop(&broker, s.cfg, &api, calls, &args.user, stop.clone()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::cmd::fail("api", 1, format!("{e:#}")),
    };
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    site_stop.cancel();
    if let Some(w) = worker {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    broker.close().await;
    code
}

async fn run_loop(
    broker: &Broker,
    cfg: EngineConfig,
    api: &Api,
    calls: tokio::sync::mpsc::Receiver<aetherv_api::requests::Call>,
    user: &str,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let engine = Engine::new(broker.clone(), cfg)?;
    let render = aetherv_bot::render::Renderer::load(
        "console",
        aetherv_bot::render::CONSOLE_TEMPLATES,
        crate::cmd::templates_dir(None).as_deref(),
    )?;
    let console = aetherv_bot::ConsoleAdapter::new(
        tokio::io::BufReader::new(tokio::io::stdin()),
        aetherv_bot::Console::new(tokio::io::stdout(), render, Some(std::env::temp_dir())),
        user,
    );
    let mut adapter = api.wrap(console, calls);
    let candidate = format!("api-{}", std::process::id());
    aetherv_bot::serve(engine, &mut adapter, &candidate, stop).await
}
