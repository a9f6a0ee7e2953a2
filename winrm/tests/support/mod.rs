//! Helpers shared by the `it` and `kerberos` test binaries: the Python peer
//! (`tests/peers/ntlm_winrm_peer.py`) as a child process, its counters, test certificates and
//! small client calls. Each binary uses a part of it.
#![allow(
    dead_code,
    reason = "each test binary uses a part of the shared helpers"
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aetherv_winrm::{CommandOutput, ExitStatus, OutputLine, RunOptions, Shell, WinrmClient};
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// A child process killed (by its own pid, through the handle) when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workspace venv's python (or `$AETHERV_PYTHON`); fails loudly, saying what `peer` needs,
/// when it is missing.
pub fn python(peer: &str) -> PathBuf {
    let python = std::env::var_os("AETHERV_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        python.exists(),
        "the {peer} at {} (python3 -m venv .venv && .venv/bin/pip install -r \
         tests/peers/requirements.txt, or set AETHERV_PYTHON)",
        python.display()
    );
    python
}

/// A command that runs the peer script with `python`.
pub fn peer_command(python: PathBuf) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/ntlm_winrm_peer.py"));
    cmd
}

/// Spawns the peer and waits for its `LISTENING <port>` line; `what` names it in the panic.
pub fn spawn_peer(mut cmd: Command, what: &str) -> (Process, u16) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("peer spawns");
    let stdout = child.stdout.take().expect("peer stdout");
    let child = Process(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("peer's first line");
    let port = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{what} did not start: {line:?}"));
    (child, port)
}

/// The whitespace-separated counters the peer answers on `GET /peer/stats`.
pub fn peer_stats(port: u16) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the peer");
    s.write_all(b"GET /peer/stats HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n")
        .expect("stats request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("stats response");
    let body = text.split("\r\n\r\n").nth(1).expect("stats body");
    body.split_whitespace().map(str::to_owned).collect()
}

/// Run options that send `stdin`.
pub fn with_stdin(stdin: impl Into<Vec<u8>>) -> RunOptions {
    RunOptions {
        stdin: Some(stdin.into()),
        ..RunOptions::default()
    }
}

/// Runs `cat` with `stdin`.
pub async fn cat(client: &WinrmClient, stdin: &str) -> CommandOutput {
    client
        .run_collect("cat", &[], with_stdin(stdin))
        .await
        .expect("cat runs")
}

/// Runs one command in `shell` and collects its output lines.
pub async fn run_lines(
    shell: &mut Shell,
    command: &str,
    args: &[String],
) -> (ExitStatus, Vec<OutputLine>) {
    let mut lines = Vec::new();
    let status = shell
        .run(command, args, RunOptions::default(), &mut |l| lines.push(l))
        .await
        .expect("command runs");
    (status, lines)
}

/// A test CA named `ca_name` and a leaf for `names` it signed (ECDSA P-256 / SHA-256): the CA
/// certificate, the leaf and the leaf's key.
pub fn ca_and_leaf(ca_name: &str, names: &[&str]) -> (Certificate, Certificate, KeyPair) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .expect("leaf params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    (ca, leaf, leaf_key)
}

/// Run options with a deadline.
pub fn with_deadline(deadline: Duration) -> RunOptions {
    RunOptions {
        deadline: Some(deadline),
        ..RunOptions::default()
    }
}

/// Runs the peer's `emit <lines>` and checks it printed `line 1` to `line <lines>` and exited 0.
pub async fn assert_emits(client: &WinrmClient, lines: usize) {
    let out = client
        .run_collect("emit", &[lines.to_string()], RunOptions::default())
        .await
        .expect("emit runs");
    assert_eq!(out.exit_code, 0);
    let expected: String = (1..=lines).map(|i| format!("line {i}\n")).collect();
    assert_eq!(out.stdout, expected);
}
