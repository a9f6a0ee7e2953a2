//! NTLM with MS-WSMV message encryption against an independent implementation: the Python
//! peer `tests/peers/ntlm_winrm_peer.py`, which uses pyspnego as the NTLM acceptor and for
//! sealing, and refuses unsealed bodies on authenticated connections (HTTP 400).
//!
//! Needs the workspace venv with pyspnego (`.venv/bin/python`, or `$AETHERV_PYTHON`); the tests
//! fail loudly when it is missing.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aetherv_winrm::{Auth, ClientConfig, RunOptions, WinrmClient, WinrmError};

const PASSWORD: &str = "peer-Pa55word!";

/// The running peer; killed (by its own pid, through the handle) when dropped.
struct Peer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let python = std::env::var_os("AETHERV_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        python.exists(),
        "the ntlm peer needs a python with pyspnego at {} (python3 -m venv .venv && \
         .venv/bin/pip install -r tests/peers/requirements.txt, or set AETHERV_PYTHON)",
        python.display()
    );
    python
}

fn start_peer() -> Peer {
    start_peer_with(tempfile::tempdir().unwrap(), &[])
}

/// Starts the peer with extra arguments; `dir` holds its files and lives as long as it.
fn start_peer_with(dir: tempfile::TempDir, extra: &[String]) -> Peer {
    let users = dir.path().join("users");
    std::fs::write(&users, format!("PEER:aetherv:{PASSWORD}\n")).unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/ntlm_winrm_peer.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg("--users-file")
        .arg(&users)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("ntlm peer did not start: {line:?}"));
    Peer {
        child,
        port,
        _dir: dir,
    }
}

impl Peer {
    fn client(&self, password: &str) -> WinrmClient {
        let mut cfg = ClientConfig::new(
            format!("http://127.0.0.1:{}/wsman", self.port),
            Auth::Ntlm {
                username: "aetherv".into(),
                password: password.into(),
                domain: "PEER".into(),
            },
        );
        cfg.operation_timeout = Duration::from_secs(5);
        WinrmClient::new(cfg).unwrap()
    }

    /// (sealed requests, connections, auth failures, open shells, authentications, plain
    /// requests over tls).
    fn stats(&self) -> [u64; 6] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(b"GET /peer/stats HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: Vec<u64> = body
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        [v[0], v[1], v[2], v[3], v[4], v[5]]
    }
}

#[tokio::test]
async fn sealed_round_trips_with_output_over_many_receives() {
    let peer = start_peer();
    let client = peer.client(PASSWORD);
    let out = client
        .run_collect("emit", &["60".into()], RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    let expected: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    assert_eq!(out.stdout, expected);
    let [sealed, connections, failures, shells, auths, _] = peer.stats();
    // Create, Command, 9 Receives (60 lines in chunks of 7, then Done), Signal, Delete; all
    // sealed (the peer refuses plain bodies), over one authenticated connection.
    assert_eq!(sealed, 1 + 1 + 10 + 1 + 1);
    assert_eq!((connections, failures, shells, auths), (2, 0, 0, 1));
}

#[tokio::test]
async fn stdin_is_sent_sealed_and_echoed() {
    let peer = start_peer();
    let client = peer.client(PASSWORD);
    let stdin = "first line\r\nzweite Zeile äöü\r\n".repeat(50);
    let out = client
        .run_collect(
            "cat",
            &[],
            RunOptions {
                stdin: Some(stdin.clone().into_bytes()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    let expected: String = stdin.lines().map(|l| format!("{l}\n")).collect();
    assert_eq!(out.stdout, expected);
}

#[tokio::test]
async fn several_commands_in_one_shell_and_stderr_exit_code() {
    let peer = start_peer();
    let client = peer.client(PASSWORD);
    let mut shell = client.open_shell().await.unwrap();
    for _ in 0..3 {
        let mut lines = Vec::new();
        let status = shell
            .run("hello", &[], RunOptions::default(), &mut |l| lines.push(l))
            .await
            .unwrap();
        assert!(status.success());
        assert_eq!(
            lines,
            vec![aetherv_winrm::OutputLine::Stdout("hello from peer".into())]
        );
    }
    let mut lines = Vec::new();
    let status = shell
        .run("fail", &["3".into()], RunOptions::default(), &mut |l| {
            lines.push(l)
        })
        .await
        .unwrap();
    assert_eq!(status.code, 3);
    assert_eq!(
        lines,
        vec![aetherv_winrm::OutputLine::Stderr("peer failure".into())]
    );
    shell.close().await.unwrap();
    assert_eq!(peer.stats()[3], 0, "shell deleted");
}

#[tokio::test]
async fn deadline_sends_a_sealed_signal_and_delete() {
    let peer = start_peer();
    let client = peer.client(PASSWORD);
    let err = client
        .run_collect(
            "sleep",
            &[],
            RunOptions {
                deadline: Some(Duration::from_secs(1)),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::Timeout), "{err:?}");
    let [_, _, failures, shells, _, _] = peer.stats();
    assert_eq!(
        (failures, shells),
        (0, 0),
        "the shell was deleted after the deadline"
    );
}

#[tokio::test]
async fn a_401_on_an_authenticated_connection_re_authenticates() {
    let peer = start_peer();
    let client = peer.client(PASSWORD);
    let mut shell = client.open_shell().await.unwrap();
    let mut lines = Vec::new();
    let status = shell
        .run("forget-auth", &[], RunOptions::default(), &mut |l| {
            lines.push(l)
        })
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(
        lines,
        vec![aetherv_winrm::OutputLine::Stdout("hello from peer".into())]
    );
    shell.close().await.unwrap();
    let [_, _, failures, shells, auths, _] = peer.stats();
    assert_eq!((failures, shells, auths), (0, 0, 2));
}

#[tokio::test]
async fn wrong_password_is_a_clear_authentication_error() {
    let peer = start_peer();
    let client = peer.client("not-the-password");
    let err = client
        .run_collect("hello", &[], RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::Auth { status: 401 }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("authentication rejected"), "{text}");
    assert!(!text.contains("not-the-password"));
    assert_eq!(peer.stats()[2], 1, "the peer saw one failed authentication");
}

/// A CA and a `localhost` leaf it signed (ECDSA P-256 / SHA-256), written as PEM files:
/// returns the CA PEM and the leaf certificate and key paths.
fn tls_files(dir: &std::path::Path, stem: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "aetherv peer ca");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (
        ca.pem(),
        cert.display().to_string(),
        key.display().to_string(),
    )
}

fn https_client(peer: &Peer, ca_pem: &str) -> WinrmClient {
    let mut cfg = ClientConfig::new(
        format!("https://localhost:{}/wsman", peer.port),
        Auth::Ntlm {
            username: "PEER\\aetherv".into(),
            password: PASSWORD.into(),
            domain: String::new(),
        },
    );
    cfg.tls.ca_pem = Some(ca_pem.as_bytes().to_vec());
    WinrmClient::new(cfg).unwrap()
}

#[tokio::test]
async fn https_binds_ntlm_to_the_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path(), "leaf");
    let args = ["--tls-cert".to_owned(), cert, "--tls-key".to_owned(), key];
    let peer = start_peer_with(dir, &args);
    // pyspnego verifies the channel bindings (EPA); the bodies travel unsealed inside TLS.
    let out = https_client(&peer, &ca)
        .run_collect("emit", &["10".into()], RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout.lines().count(), 10);
}

#[tokio::test]
async fn https_with_mismatched_channel_bindings_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path(), "leaf");
    let (_, other, _) = tls_files(dir.path(), "other");
    let args = [
        "--tls-cert".to_owned(),
        cert,
        "--tls-key".to_owned(),
        key,
        "--bindings-cert".to_owned(),
        other,
    ];
    let peer = start_peer_with(dir, &args);
    let err = https_client(&peer, &ca)
        .run_collect("hello", &[], RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::Auth { status: 401 }), "{err:?}");
}
