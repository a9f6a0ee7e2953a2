//! Kerberos against a real MIT KDC on loopback, with an independent keytab-based acceptor.
//!
//! The fixture makes a throwaway realm in a temporary directory (`kdb5_util create -s`,
//! `kadmin.local` for a password user, a keytab user and `HTTP/127.0.0.1` with its service
//! keytab), runs `krb5kdc -n` on a free loopback port, and starts the Python peer
//! `tests/peers/ntlm_winrm_peer.py --kerberos` (pyspnego + the `gssapi` package over MIT krb5,
//! service keys from `KRB5_KTNAME`), which seals and unseals with pyspnego's `wrap_winrm` /
//! `unwrap_winrm`. Needs Debian's `krb5-kdc krb5-admin-server` and the venv of
//! `tests/peers/requirements.txt`: without them every test fails loudly, none is skipped.
//!
//! A custom harness (`harness = false`): MIT reads `KRB5_CONFIG`, `KRB5CCNAME` and
//! `KRB5_CLIENT_KTNAME` from the process environment, which is set here before any thread
//! exists; the tests then run one after another on one runtime.

#![expect(clippy::unwrap_used, reason = "tests unwrap known-good fixtures")]

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aetherv_winrm::{
    kerberos, Auth, ClientConfig, KerberosSecret, OutputLine, RunOptions, WinrmClient, WinrmError,
};

#[path = "support/mod.rs"]
mod support;
use support::{
    assert_emits, cat, peer_command, peer_stats, python, run_lines, spawn_peer, Process,
};

const REALM: &str = "AETHERV.TEST";
const ALICE_PASSWORD: &str = "al1ce-Kerb-Pa55!";
const WRONG_PASSWORD: &str = "n0t-alices-Pa55";

/// A throwaway MIT realm with a running KDC; the KDC is killed (by its pid) when dropped,
/// before its directory is removed.
struct Realm {
    _kdc: Process,
    dir: tempfile::TempDir,
    krb5_conf: PathBuf,
    client_keytab: PathBuf,
    service_keytab: PathBuf,
}

/// An MIT tool from PATH or /usr/sbin, or a loud failure naming the package.
fn tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
    ]) {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` not found: the kerberos tests need an MIT KDC \
         (apt-get install krb5-kdc krb5-admin-server krb5-user; scripts/test.sh does this)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Realm {
    fn create() -> Realm {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let krb5_conf = d.join("krb5.conf");
        let kdc_conf = d.join("kdc.conf");
        std::fs::write(
            &krb5_conf,
            format!(
                "[libdefaults]\n  default_realm = {REALM}\n  dns_lookup_realm = false\n  \
                 dns_lookup_kdc = false\n  rdns = false\n  dns_canonicalize_hostname = false\n  \
                 udp_preference_limit = 1\n[realms]\n  {REALM} = {{\n    kdc = 127.0.0.1:{port}\n  }}\n\
                 [domain_realm]\n  127.0.0.1 = {REALM}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            &kdc_conf,
            format!(
                "[kdcdefaults]\n  kdc_listen = 127.0.0.1:{port}\n  kdc_tcp_listen = 127.0.0.1:{port}\n\
                 [realms]\n  {REALM} = {{\n    database_name = {db}\n    key_stash_file = {stash}\n    \
                 acl_file = {acl}\n    max_life = 1h\n    \
                 supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n  }}\n\
                 [logging]\n  kdc = FILE:{log}\n",
                db = d.join("principal").display(),
                stash = d.join("stash").display(),
                acl = d.join("kadm5.acl").display(),
                log = d.join("kdc.log").display(),
            ),
        )
        .unwrap();
        std::fs::write(d.join("kadm5.acl"), "").unwrap();
        let env = |cmd: &mut Command| {
            cmd.env("KRB5_CONFIG", &krb5_conf)
                .env("KRB5_KDC_PROFILE", &kdc_conf)
                .env("KRB5CCNAME", "MEMORY:fixture");
        };
        let run = |program: PathBuf, args: &[&str]| {
            let mut cmd = Command::new(&program);
            env(&mut cmd);
            let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
            assert!(
                out.status.success(),
                "{} {args:?} failed: {}{}",
                program.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let master = format!("master-{}", std::process::id());
        run(
            tool("kdb5_util"),
            &["-r", REALM, "create", "-s", "-P", &master],
        );
        let client_keytab = d.join("client.keytab");
        let service_keytab = d.join("http.keytab");
        let kadmin = |query: &str| run(tool("kadmin.local"), &["-r", REALM, "-q", query]);
        kadmin(&format!("addprinc -pw {ALICE_PASSWORD} alice"));
        kadmin("addprinc -randkey svc-aetherv");
        kadmin(&format!("ktadd -k {} svc-aetherv", client_keytab.display()));
        kadmin("addprinc -randkey HTTP/127.0.0.1");
        kadmin(&format!(
            "ktadd -k {} HTTP/127.0.0.1",
            service_keytab.display()
        ));
        let mut cmd = Command::new(tool("krb5kdc"));
        env(&mut cmd);
        let mut kdc = cmd
            .args(["-n", "-r", REALM, "-P"])
            .arg(d.join("kdc.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = kdc.try_wait().unwrap() {
                let log = std::fs::read_to_string(d.join("kdc.log")).unwrap_or_default();
                panic!("krb5kdc exited with {status}: {log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "krb5kdc did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Realm {
            _kdc: Process(kdc),
            dir,
            krb5_conf,
            client_keytab,
            service_keytab,
        }
    }
}

/// The Kerberos WinRM peer; killed when dropped.
struct Peer {
    _child: Process,
    port: u16,
}

fn start_peer(realm: &Realm) -> Peer {
    let mut cmd = peer_command(python(
        "kerberos peer needs a python with pyspnego and gssapi",
    ));
    cmd.arg("--kerberos")
        .env("KRB5_CONFIG", &realm.krb5_conf)
        .env(
            "KRB5_KTNAME",
            format!("FILE:{}", realm.service_keytab.display()),
        )
        .env("KRB5CCNAME", "MEMORY:peer")
        .env_remove("KRB5_CLIENT_KTNAME");
    let (child, port) = spawn_peer(cmd, "kerberos peer");
    Peer {
        _child: child,
        port,
    }
}

/// What the peer counted.
#[derive(Debug, PartialEq, Eq)]
struct Stats {
    sealed: u64,
    connections: u64,
    auth_failures: u64,
    open_shells: u64,
    authentications: u64,
    client: String,
}

impl Peer {
    fn client(&self, principal: &str, secret: KerberosSecret, spn: Option<&str>) -> WinrmClient {
        let mut cfg = ClientConfig::new(
            format!("http://127.0.0.1:{}/wsman", self.port),
            Auth::Kerberos {
                principal: principal.into(),
                secret,
                spn: spn.map(str::to_owned),
            },
        );
        cfg.operation_timeout = Duration::from_secs(5);
        WinrmClient::new(cfg).unwrap()
    }

    fn alice(&self, password: &str) -> WinrmClient {
        self.client(
            "alice@AETHERV.TEST",
            KerberosSecret::Password(password.into()),
            None,
        )
    }

    fn stats(&self) -> Stats {
        let v = peer_stats(self.port);
        let n = |i: usize| v[i].parse::<u64>().unwrap();
        Stats {
            sealed: n(0),
            connections: n(1),
            auth_failures: n(2),
            open_shells: n(3),
            authentications: n(4),
            client: v[6].clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

async fn password_authenticates_and_round_trips_are_sealed(realm: &Realm) {
    let peer = start_peer(realm);
    let client = peer.alice(ALICE_PASSWORD);
    assert_emits(&client, 30).await;
    // Create, Command, 6 Receives (30 lines in chunks of 7, then Done), Signal, Delete: all
    // sealed (the peer refuses plain bodies with 400), over one connection authenticated once.
    assert_eq!(
        peer.stats(),
        Stats {
            sealed: 10,
            connections: 2,
            auth_failures: 0,
            open_shells: 0,
            authentications: 1,
            client: "alice@AETHERV.TEST".into(),
        }
    );
}

async fn stdin_is_sent_sealed_and_a_failing_command_reports_its_exit_code(realm: &Realm) {
    let peer = start_peer(realm);
    let client = peer.alice(ALICE_PASSWORD);
    let stdin = "erste Zeile äöü\r\nsecond line\r\n".repeat(40);
    let out = cat(&client, &stdin).await;
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout, stdin.replace("\r\n", "\n"));
    let out = client
        .run_collect("fail", &["3".into()], RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stderr, "peer failure\n");
    let stats = peer.stats();
    assert_eq!((stats.auth_failures, stats.open_shells), (0, 0));
    // One credential acquisition, but a security context per shell connection.
    assert_eq!(stats.authentications, 2);
}

async fn keytab_principal_authenticates(realm: &Realm) {
    let peer = start_peer(realm);
    let client = peer.client(
        "svc-aetherv@AETHERV.TEST",
        KerberosSecret::Keytab(realm.client_keytab.clone()),
        Some("HTTP/127.0.0.1@AETHERV.TEST"),
    );
    let out = client
        .run_collect("hello", &[], RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_str()),
        (0, "hello from peer\n")
    );
    let stats = peer.stats();
    assert_eq!(stats.client, "svc-aetherv@AETHERV.TEST");
    assert_eq!(
        (stats.authentications, stats.auth_failures),
        (1, 0),
        "{stats:?}"
    );
}

async fn a_401_on_an_authenticated_connection_reauthenticates(realm: &Realm) {
    let peer = start_peer(realm);
    let client = peer.alice(ALICE_PASSWORD);
    let mut shell = client.open_shell().await.unwrap();
    // The peer drops the connection's context after this command: the Signal that follows
    // gets a 401 and the client must establish a new context on the same connection.
    let (status, lines) = run_lines(&mut shell, "forget-auth", &[]).await;
    assert!(status.success());
    assert_eq!(lines, vec![OutputLine::Stdout("hello from peer".into())]);
    shell.close().await.unwrap();
    let stats = peer.stats();
    assert_eq!(
        (
            stats.auth_failures,
            stats.open_shells,
            stats.authentications
        ),
        (0, 0, 2)
    );
}

async fn a_wrong_password_is_a_clear_credential_error(realm: &Realm) {
    let peer = start_peer(realm);
    let client = peer.alice(WRONG_PASSWORD);
    let err = client
        .run_collect("hello", &[], RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            WinrmError::Kerberos {
                credentials_rejected: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_auth_rejected());
    let text = err.to_string();
    assert!(
        text.contains("kdc rejected the credentials of alice@AETHERV.TEST"),
        "{text}"
    );
    let debug = format!("{err:?} {client:?}");
    for shown in [&text, &debug] {
        assert!(!shown.contains(WRONG_PASSWORD) && !shown.contains(ALICE_PASSWORD));
    }
    // The KDC refused: the host never saw a request.
    let stats = peer.stats();
    assert_eq!((stats.authentications, stats.sealed), (0, 0));
}

async fn an_unknown_service_principal_is_not_a_credential_error(realm: &Realm) {
    let peer = start_peer(realm);
    let client = peer.client(
        "alice@AETHERV.TEST",
        KerberosSecret::Password(ALICE_PASSWORD.into()),
        Some("HTTP/no-such-host.aetherv.test"),
    );
    let err = client
        .run_collect("hello", &[], RunOptions::default())
        .await
        .unwrap_err();
    let WinrmError::Kerberos {
        message,
        credentials_rejected,
    } = &err
    else {
        panic!("kerberos error expected: {err:?}");
    };
    assert!(!credentials_rejected, "{message}");
    assert!(
        message.contains("HTTP/no-such-host.aetherv.test"),
        "{message}"
    );
    assert!(!err.is_auth_rejected());
}

async fn a_keytab_that_is_not_the_client_keytab_is_a_config_error(realm: &Realm) {
    let cfg = ClientConfig::new(
        "http://127.0.0.1:5985/wsman",
        Auth::Kerberos {
            principal: "svc-aetherv@AETHERV.TEST".into(),
            secret: KerberosSecret::Keytab(realm.dir.path().join("other.keytab")),
            spn: None,
        },
    );
    let err = WinrmClient::new(cfg).unwrap_err();
    assert!(matches!(err, WinrmError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("KRB5_CLIENT_KTNAME"), "{err}");
}

type TestFn = for<'a> fn(&'a Realm) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        [$((stringify!($name), (|r| Box::pin($name(r))) as TestFn)),*]
    };
}

/// Collects everything the crate logs, to prove no password is in it.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "MIT krb5 reads its configuration from the environment; set before any thread starts"
)]
fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // Everything MIT reads from the environment is set before any thread starts.
    let realm = Realm::create();
    std::env::set_var("KRB5_CONFIG", &realm.krb5_conf);
    std::env::set_var("KRB5CCNAME", "MEMORY:aetherv-winrm-tests");
    kerberos::install_client_keytab(&realm.client_keytab);
    let logs = LogBuffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let all = tests![
        password_authenticates_and_round_trips_are_sealed,
        stdin_is_sent_sealed_and_a_failing_command_reports_its_exit_code,
        keytab_principal_authenticates,
        a_401_on_an_authenticated_connection_reauthenticates,
        a_wrong_password_is_a_clear_credential_error,
        an_unknown_service_principal_is_not_a_credential_error,
        a_keytab_that_is_not_the_client_keytab_is_a_config_error,
    ];
    let selected: Vec<_> = all
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len() + 1);
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in &selected {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(test(&realm))));
        if outcome.is_ok() {
            println!("test {name} ... ok");
            passed += 1;
        } else {
            println!("test {name} ... FAILED");
            failed += 1;
        }
    }
    // Last: nothing logged, at any level, contains a password.
    let text =
        String::from_utf8_lossy(&logs.0.lock().map(|v| v.clone()).unwrap_or_default()).into_owned();
    if std::env::var_os("AETHERV_TEST_LOGS").is_some() {
        eprintln!("{text}");
    }
    let name = "logs_never_contain_a_password";
    if (text.contains("kerberos") || selected.len() < 2)
        && !text.contains(ALICE_PASSWORD)
        && !text.contains(WRONG_PASSWORD)
    {
        println!("test {name} ... ok");
        passed += 1;
    } else {
        println!("test {name} ... FAILED ({} bytes of logs)", text.len());
        failed += 1;
    }
    drop(runtime);
    drop(realm);
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out\n"
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
