//! NTLM with MS-WSMV message encryption against an independent implementation: the Python
//! peer `tests/peers/ntlm_winrm_peer.py`, which uses pyspnego as the NTLM acceptor and for
//! sealing, and refuses unsealed bodies on authenticated connections (HTTP 400).
//!
//! Needs the workspace venv with pyspnego (`.venv/bin/python`, or `$AETHERV_PYTHON`); the tests
//! fail loudly when it is missing.

use std::time::Duration;

use aetherv_winrm::{Auth, ClientConfig, RunOptions, WinrmClient, WinrmError};

use crate::support::{assert_emits, cat, with_deadline, Process};
use crate::support::{ca_and_leaf, peer_command, peer_stats, python, run_lines, spawn_peer};

const PASSWORD: &str = "peer-Pa55word!";

/// The running peer; killed when dropped.
struct Peer {
    _child: Process,
    port: u16,
    _dir: tempfile::TempDir,
}

fn start_peer() -> Peer {
    start_peer_with(tempfile::tempdir().unwrap(), &[])
}

/// Starts the peer with extra arguments; `dir` holds its files and lives as long as it.
fn start_peer_with(dir: tempfile::TempDir, extra: &[String]) -> Peer {
    let users = dir.path().join("users");
    std::fs::write(&users, format!("PEER:aetherv:{PASSWORD}\n")).unwrap();
    let mut cmd = peer_command(python("ntlm peer needs a python with pyspnego"));
    cmd.arg("--users-file").arg(&users).args(extra);
    let (child, port) = spawn_peer(cmd, "ntlm peer");
    Peer {
        _child: child,
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
        let v: Vec<u64> = peer_stats(self.port)
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        [v[0], v[1], v[2], v[3], v[4], v[5]]
    }
}

#[tokio::test]
async fn sealed_round_trips_with_output_over_many_receives() {
    let peer = start_peer();
    let client = peer.client(PASSWORD);
    assert_emits(&client, 60).await;
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
    let out = cat(&client, &stdin).await;
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
        let (status, lines) = run_lines(&mut shell, "hello", &[]).await;
        assert!(status.success());
        assert_eq!(
            lines,
            vec![aetherv_winrm::OutputLine::Stdout("hello from peer".into())]
        );
    }
    let (status, lines) = run_lines(&mut shell, "fail", &["3".into()]).await;
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
        .run_collect("sleep", &[], with_deadline(Duration::from_secs(1)))
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
    let (status, lines) = run_lines(&mut shell, "forget-auth", &[]).await;
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
    let (ca, leaf, leaf_key) = ca_and_leaf("aetherv peer ca", &["localhost"]);
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
