//! End to end against the fake WinRM server: Basic auth, streaming, stdin,
//! deadlines, cancellation, faults, reconnects and HTTPS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aetherv_winrm::{
    Auth, CancellationToken, ClientConfig, OutputLine, RunOptions, TlsOptions, WinrmClient,
    WinrmError,
};
use rustls::pki_types::PrivateKeyDer;

use crate::fake::{Fake, FakeOptions, Step, SHELL_ID};
use crate::support::{ca_and_leaf, with_deadline, with_stdin};

const TERMINATE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate";
const PS_NS: &str = "http://schemas.microsoft.com/powershell/2004/04";

fn config(url: String) -> ClientConfig {
    let defaults = FakeOptions::default();
    let mut cfg = ClientConfig::new(
        url,
        Auth::Basic {
            username: defaults.username,
            password: defaults.password,
        },
    );
    cfg.operation_timeout = Duration::from_secs(2);
    cfg.connect_timeout = Duration::from_secs(2);
    cfg
}

fn client(fake: &Fake) -> WinrmClient {
    WinrmClient::new(config(fake.http_url())).unwrap()
}

/// Runs `command` with no arguments and returns the error it must fail with.
async fn run_err(fake: &Fake, command: &str) -> WinrmError {
    client(fake)
        .run_collect(command, &[], RunOptions::default())
        .await
        .unwrap_err()
}

fn scripted_ps(fake: &Fake) {
    fake.script(
        "powershell.exe",
        vec![
            Step::Output(vec![("stdout", b"hel".to_vec()), ("stderr", b"#< CLI".to_vec())], None),
            Step::TimedOut,
            Step::Output(
                vec![
                    ("stdout", b"lo\r\nwor".to_vec()),
                    (
                        "stderr",
                        format!("XML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"{PS_NS}\"><S S=\"Error\">bad_x000D__x000A_</S><S S=\"Error\">half_x00")
                            .into_bytes(),
                    ),
                ],
                None,
            ),
            Step::Output(
                vec![
                    ("stdout", "ld \u{20ac}\n".as_bytes().to_vec()),
                    ("stderr", b"41_</S></Objs>".to_vec()),
                ],
                Some(3),
            ),
        ],
    );
}

fn ps_args() -> Vec<String> {
    vec![
        "-NoProfile".into(),
        "-EncodedCommand".into(),
        "ZQBjAGgAbwA=".into(),
    ]
}

#[tokio::test]
async fn run_streams_lines_in_order_across_chunks_and_a_timed_out_poll() {
    let fake = Fake::start(FakeOptions::default()).await;
    scripted_ps(&fake);
    let mut lines = Vec::new();
    let status = client(&fake)
        .run(
            "powershell.exe",
            &ps_args(),
            RunOptions::default(),
            &mut |l| lines.push(l),
        )
        .await
        .unwrap();
    assert_eq!(status.code, 3);
    assert_eq!(
        lines,
        vec![
            OutputLine::Stdout("hello".into()),
            OutputLine::Stderr("bad".into()),
            OutputLine::Stdout("world \u{20ac}".into()),
            OutputLine::Stderr("halfA".into()),
        ]
    );
    assert_eq!(
        fake.actions(),
        vec!["Create", "Command", "Receive", "Receive", "Receive", "Receive", "Signal", "Delete"]
    );
    let requests = fake.requests();
    let command = &requests[1];
    assert_eq!(command.command.as_deref(), Some("powershell.exe"));
    assert_eq!(command.args, ps_args());
    assert_eq!(
        requests[0].options,
        vec![
            ("WINRS_NOPROFILE".to_owned(), "FALSE".to_owned()),
            ("WINRS_CODEPAGE".to_owned(), "65001".to_owned())
        ]
    );
    assert_eq!(requests[6].signal_code.as_deref(), Some(TERMINATE));
    assert!(requests[1..]
        .iter()
        .all(|r| r.shell_id.as_deref() == Some(SHELL_ID)));
    // One pinned connection carried the whole shell.
    assert!(requests.iter().all(|r| r.connection == 1));
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn run_collect_joins_lines_and_keeps_the_exit_code() {
    let fake = Fake::start(FakeOptions::default()).await;
    scripted_ps(&fake);
    let out = client(&fake)
        .run_collect("powershell.exe", &ps_args(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout, "hello\nworld \u{20ac}\n");
    assert_eq!(out.stderr, "bad\nhalfA\n");
}

#[tokio::test]
async fn stdin_is_sent_base64_with_end_true() {
    let fake = Fake::start(FakeOptions::default()).await;
    let payload = b"{\"operation\":\"noop\"}\r\n".to_vec();
    let out = client(&fake)
        .run_collect("cat", &[], with_stdin(payload.clone()))
        .await
        .unwrap();
    assert_eq!(out.stdout, "{\"operation\":\"noop\"}\n");
    let send = fake
        .requests()
        .into_iter()
        .find(|r| r.action.ends_with("/Send"))
        .unwrap();
    assert_eq!(send.stdin, payload);
    assert_eq!(send.stdin_end.as_deref(), Some("true"));
    assert!(send.command_id.is_some());
}

#[tokio::test]
async fn large_stdin_is_split_into_several_sends_with_end_on_the_last() {
    let fake = Fake::start(FakeOptions::default()).await;
    let mut cfg = config(fake.http_url());
    cfg.max_envelope_size = 8192;
    let line: String = (0..10_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let out = WinrmClient::new(cfg)
        .unwrap()
        .run_collect("cat", &[], with_stdin(format!("{line}\n").into_bytes()))
        .await
        .unwrap();
    assert_eq!(out.stdout, format!("{line}\n"));
    let sends: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.action.ends_with("/Send"))
        .collect();
    assert_eq!(sends.len(), 4);
    assert!(sends.iter().all(|s| s.stdin.len() <= 3072));
    let ends: Vec<_> = sends.iter().map(|s| s.stdin_end.clone().unwrap()).collect();
    assert_eq!(ends, vec!["false", "false", "false", "true"]);
}

#[tokio::test]
async fn unexpected_http_status_keeps_a_short_snippet() {
    let fake = Fake::start(FakeOptions::default()).await;
    let err = run_err(&fake, "http503").await;
    assert!(
        matches!(
            &err,
            WinrmError::Http { status: 503, body_snippet }
                if body_snippet == "<html><body> Service Unavailable </body></html>"
        ),
        "unexpected {err:?}"
    );
}

#[tokio::test]
async fn deadline_terminates_the_command_and_deletes_the_shell() {
    let fake = Fake::start(FakeOptions::default()).await;
    let started = Instant::now();
    let err = client(&fake)
        .run(
            "hang",
            &[],
            with_deadline(Duration::from_millis(700)),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let requests = fake.requests();
    let command_id = requests
        .iter()
        .find(|r| r.action.ends_with("/Receive"))
        .and_then(|r| r.command_id.clone())
        .unwrap();
    let signal = requests
        .iter()
        .find(|r| r.action.ends_with("/Signal"))
        .expect("terminate signal observed");
    assert_eq!(signal.signal_code.as_deref(), Some(TERMINATE));
    assert_eq!(signal.command_id.as_deref(), Some(command_id.as_str()));
    let actions = fake.actions();
    assert_eq!(actions.iter().filter(|a| *a == "Delete").count(), 1);
    assert_eq!(actions.last().map(String::as_str), Some("Delete"));
    // The abandoned long-poll poisoned the first connection; clean-up used a new one.
    assert!(signal.connection > 1);
}

#[tokio::test]
async fn cancellation_terminates_and_reports_cancelled() {
    let fake = Fake::start(FakeOptions::default()).await;
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        trigger.cancel();
    });
    let client = client(&fake);
    let mut shell = client.open_shell().await.unwrap();
    let err = shell
        .run(
            "hang",
            &[],
            RunOptions {
                cancel: Some(token),
                ..RunOptions::default()
            },
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::Cancelled), "{err:?}");
    assert!(shell.is_closed());
    let again = shell
        .run("hang", &[], RunOptions::default(), &mut |_| {})
        .await;
    assert!(matches!(again, Err(WinrmError::ShellClosed)));
    let actions = fake.actions();
    assert!(actions.contains(&"Signal".to_owned()));
    assert_eq!(actions.last().map(String::as_str), Some("Delete"));
}

#[tokio::test]
async fn a_shell_runs_several_commands_over_one_connection() {
    let fake = Fake::start(FakeOptions::default()).await;
    let client = client(&fake);
    let mut shell = client.open_shell().await.unwrap();
    assert_eq!(shell.shell_id(), SHELL_ID);
    for n in 0..3 {
        let mut lines = Vec::new();
        let status = shell
            .run("cat", &[], with_stdin(format!("run {n}\n")), &mut |l| {
                lines.push(l)
            })
            .await
            .unwrap();
        assert!(status.success());
        assert_eq!(lines, vec![OutputLine::Stdout(format!("run {n}"))]);
    }
    shell.close().await.unwrap();
    assert_eq!(fake.connections(), 1);
    let actions = fake.actions();
    assert_eq!(actions.iter().filter(|a| *a == "Command").count(), 3);
    assert_eq!(actions.last().map(String::as_str), Some("Delete"));
}

#[tokio::test]
async fn dropping_an_open_shell_deletes_it_in_the_background() {
    let fake = Fake::start(FakeOptions::default()).await;
    let shell = client(&fake).open_shell().await.unwrap();
    drop(shell);
    for _ in 0..100 {
        if fake.actions().contains(&"Delete".to_owned()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("dropped shell was not deleted: {:?}", fake.actions());
}

#[tokio::test]
async fn reconnects_when_the_server_closes_the_connection() {
    let fake = Fake::start(FakeOptions {
        close_after_create: true,
        ..FakeOptions::default()
    })
    .await;
    let out = client(&fake)
        .run_collect("cat", &[], with_stdin(b"again\n".to_vec()))
        .await
        .unwrap();
    assert_eq!(out.stdout, "again\n");
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_secrets_in_the_message() {
    let fake = Fake::start(FakeOptions::default()).await;
    let mut cfg = config(fake.http_url());
    cfg.auth = Auth::Basic {
        username: "aether".into(),
        password: "wrong-secret".into(),
    };
    let err = WinrmClient::new(cfg)
        .unwrap()
        .run_collect("cat", &[], RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::Auth { status: 401 }), "{err:?}");
    assert!(!err.to_string().contains("wrong-secret"));
    assert_eq!(err.to_string(), "winrm authentication rejected (http 401)");
}

#[tokio::test]
async fn soap_fault_on_command_is_returned_as_fault() {
    let fake = Fake::start(FakeOptions::default()).await;
    let err = run_err(&fake, "fail").await;
    let WinrmError::Fault {
        code,
        subcode,
        reason,
    } = err
    else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(code, "s:Receiver");
    assert_eq!(subcode.as_deref(), Some("w:InternalError"));
    assert_eq!(reason, "The system cannot find the file specified.");
    // The shell was still closed.
    assert_eq!(fake.actions().last().map(String::as_str), Some("Delete"));
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = WinrmClient::new(config(format!("http://{addr}/wsman")))
        .unwrap()
        .open_shell()
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::Connect(_)), "{err:?}");
    assert!(err.is_connect());
}

struct Pki {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn pki() -> Pki {
    let (ca, leaf, leaf_key) = ca_and_leaf("aetherv test ca", &["127.0.0.1", "localhost"]);
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    Pki {
        ca_pem: ca.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
    }
}

#[tokio::test]
async fn https_with_the_ca_pem_succeeds_and_without_it_fails_on_the_certificate() {
    let pki = pki();
    let fake = Fake::start(FakeOptions {
        tls: Some(pki.acceptor.clone()),
        ..FakeOptions::default()
    })
    .await;
    let url = format!("https://{}/wsman", fake.addr);

    let mut cfg = config(url.clone());
    cfg.tls = TlsOptions {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        accept_invalid_certs: false,
    };
    let out = WinrmClient::new(cfg)
        .unwrap()
        .run_collect("cat", &[], with_stdin(b"over tls\n".to_vec()))
        .await
        .unwrap();
    assert_eq!(out.stdout, "over tls\n");

    let err = WinrmClient::new(config(url.clone()))
        .unwrap()
        .open_shell()
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::Tls(_)), "{err:?}");
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        source.contains("certificate"),
        "unclear tls error: {source}"
    );

    let mut insecure = config(url);
    insecure.tls.accept_invalid_certs = true;
    let shell = WinrmClient::new(insecure)
        .unwrap()
        .open_shell()
        .await
        .unwrap();
    shell.close().await.unwrap();
}
