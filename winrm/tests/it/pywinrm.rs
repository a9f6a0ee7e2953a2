//! Conformance against pywinrm's recorded fixtures (MIT), read at test time
//! from the installed `pywinrm` package, never copied into this repository.
//!
//! Needs a Python with pywinrm: `$AETHERV_PYWINRM_PYTHON`, or the workspace
//! venv at `.venv/bin/python` (`python3 -m venv .venv && .venv/bin/pip install pywinrm`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use aetherv_winrm::decode::{StderrDecoder, StdoutDecoder};
use aetherv_winrm::envelope::{self, EnvelopeParams, SignalCode};
use aetherv_winrm::response;
use uuid::Uuid;

/// Prints every top-level string constant of pywinrm's `tests/conftest.py`
/// as JSON, without importing it (it needs pytest and mock).
const EXTRACT: &str = r#"
import ast, importlib.util, json, os, sys
spec = importlib.util.find_spec("winrm")
if spec is None or spec.origin is None:
    sys.exit("pywinrm is not installed in this python")
path = os.path.join(os.path.dirname(spec.origin), "tests", "conftest.py")
tree = ast.parse(open(path, encoding="utf-8").read())
out = {}
for node in tree.body:
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
        for target in node.targets:
            if isinstance(target, ast.Name):
                out[target.id] = node.value.value
print(json.dumps(out))
"#;

fn fixtures() -> &'static HashMap<String, String> {
    static FIXTURES: OnceLock<HashMap<String, String>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let python = std::env::var_os("AETHERV_PYWINRM_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python")
            });
        assert!(
            python.exists(),
            "pywinrm fixtures need a python with pywinrm at {} (create it with \
             `python3 -m venv .venv && .venv/bin/pip install pywinrm` in the workspace root, \
             or set AETHERV_PYWINRM_PYTHON)",
            python.display()
        );
        let out = Command::new(&python)
            .arg("-c")
            .arg(EXTRACT)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "extracting pywinrm fixtures failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let map: HashMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            map.len() >= 20,
            "too few pywinrm fixtures: {:?}",
            map.keys()
        );
        map
    })
}

fn fixture(name: &str) -> String {
    fixtures()
        .get(name)
        .unwrap_or_else(|| panic!("pywinrm fixture {name} missing"))
        // Some fixtures are `%`-templates over the command id's digit.
        .replace("%s", "1")
}

const SHELL_ID: &str = "11111111-1111-1111-1111-111111111113";
const COMMAND_ID: &str = "11111111-1111-1111-1111-111111111114";

fn params() -> EnvelopeParams {
    EnvelopeParams {
        to: "http://windows-host:5985/wsman".into(),
        max_envelope_size: 153_600,
        operation_timeout: Duration::from_secs(20),
        locale: "en-US".into(),
    }
}

fn message_id() -> Uuid {
    Uuid::from_u128(0x1111_1111_1111_1111_1111_1111_1111_1111)
}

/// An order-insensitive description of a SOAP message: one entry per element
/// (namespace-qualified path, attributes by local name, trimmed text).
fn shape(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let mut out = Vec::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        let mut path: Vec<String> = node
            .ancestors()
            .filter(|n| n.is_element())
            .map(|n| {
                format!(
                    "{{{}}}{}",
                    n.tag_name().namespace().unwrap_or(""),
                    n.tag_name().name()
                )
            })
            .collect();
        path.reverse();
        let mut attrs: Vec<String> = node
            .attributes()
            .map(|a| format!("{}={}", a.name(), a.value()))
            .collect();
        attrs.sort();
        let text: String = node
            .children()
            .filter(|c| c.is_text())
            .filter_map(|c| c.text())
            .collect();
        out.push(format!(
            "{} [{}] {}",
            path.join("/"),
            attrs.join(","),
            text.trim()
        ));
    }
    out.sort();
    out
}

#[track_caller]
fn assert_same_shape(ours: &str, theirs: &str) {
    let (ours, theirs) = (shape(ours), shape(theirs));
    let missing: Vec<&String> = theirs.iter().filter(|e| !ours.contains(e)).collect();
    let extra: Vec<&String> = ours.iter().filter(|e| !theirs.contains(e)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "envelopes differ\nmissing: {missing:#?}\nextra: {extra:#?}"
    );
}

#[test]
fn request_envelopes_match_pywinrm() {
    let p = params();
    let id = message_id();
    // The comparison does see differences (here the codepage).
    assert_ne!(
        shape(&envelope::create_shell(&p, 65001, id)),
        shape(&fixture("open_shell_request"))
    );
    assert_same_shape(
        &envelope::create_shell(&p, 437, id),
        &fixture("open_shell_request"),
    );
    assert_same_shape(
        &envelope::delete_shell(&p, SHELL_ID, id),
        &fixture("close_shell_request"),
    );
    assert_same_shape(
        &envelope::command(&p, SHELL_ID, "ipconfig", &["/all".to_owned()], id),
        &fixture("run_cmd_with_args_request"),
    );
    assert_same_shape(
        &envelope::command(&p, SHELL_ID, "hostname", &[], id),
        &fixture("run_cmd_wo_args_request"),
    );
    assert_same_shape(
        &envelope::signal(&p, SHELL_ID, COMMAND_ID, SignalCode::Terminate, id),
        &fixture("cleanup_cmd_request"),
    );
    assert_same_shape(
        &envelope::receive(&p, SHELL_ID, COMMAND_ID, id),
        &fixture("get_cmd_ps_output_request"),
    );
    assert_same_shape(
        &envelope::send_stdin(
            &p,
            SHELL_ID,
            "11111111-1111-1111-1111-111111111111",
            b"echo \"hello world\" && exit\r\n",
            false,
            id,
        ),
        &fixture("run_cmd_send_input"),
    );
}

#[test]
fn open_shell_response_yields_the_selector_shell_id() {
    assert_eq!(
        response::parse_shell_id(&fixture("open_shell_response")).unwrap(),
        SHELL_ID
    );
}

#[test]
fn command_responses_yield_the_command_id() {
    assert_eq!(
        response::parse_command_id(&fixture("run_cmd_ps_response")).unwrap(),
        COMMAND_ID
    );
    assert_eq!(
        response::parse_command_id(&fixture("run_cmd_req_input_response")).unwrap(),
        "11111111-1111-1111-1111-111111111111"
    );
}

#[test]
fn empty_responses_are_accepted_and_carry_no_fault() {
    for name in [
        "close_shell_response",
        "cleanup_cmd_response",
        "run_cmd_send_input_response",
        "stdin_cmd_cleanup_response",
    ] {
        let xml = fixture(name);
        response::expect_envelope(&xml).unwrap();
        assert!(response::parse_fault(&xml).is_none(), "{name}");
    }
}

#[test]
fn cmd_output_response_decodes_stdout_and_exit_code() {
    let out = response::parse_receive(&fixture("get_cmd_output_response")).unwrap();
    let state = out.state.clone().unwrap();
    assert!(state.done);
    assert_eq!(state.exit_code, Some(0));
    let mut dec = StdoutDecoder::default();
    let mut lines = Vec::new();
    for chunk in out.streams.iter().filter(|c| c.name == "stdout") {
        assert_eq!(chunk.command_id.as_deref(), Some(COMMAND_ID));
        lines.extend(dec.push(&chunk.data));
    }
    lines.extend(dec.finish());
    assert_eq!(lines[0], "Windows IP Configuration");
    assert!(lines
        .iter()
        .any(|l| l == "   Host Name . . . . . . . . . . . . : WINDOWS-HOST"));
    assert!(lines
        .iter()
        .all(|l| !l.trim().is_empty() && !l.contains('\r')));
    assert!(out.streams.iter().filter(|c| c.end).count() == 2);
}

#[test]
fn ps_output_response_decodes_clixml_stderr() {
    let out = response::parse_receive(&fixture("get_ps_output_response")).unwrap();
    assert_eq!(out.state.unwrap().exit_code, Some(1));
    let stderr: Vec<u8> = out
        .streams
        .iter()
        .filter(|c| c.name == "stderr")
        .flat_map(|c| c.data.clone())
        .collect();
    let expected = vec![
        "Write-Error \"Error\" : Error",
        "    + CategoryInfo          : NotSpecified: (:) [Write-Error], WriteErrorExcep ",
        "   tion",
        "    + FullyQualifiedErrorId : Microsoft.PowerShell.Commands.WriteErrorExceptio ",
        "   n",
    ];
    // As delivered (two chunks) and split at every single byte position.
    for cut in 0..=stderr.len() {
        let mut dec = StderrDecoder::default();
        let mut lines = dec.push(&stderr[..cut]);
        lines.extend(dec.push(&stderr[cut..]));
        lines.extend(dec.finish());
        assert_eq!(lines, expected, "split at {cut}");
    }
}

#[test]
fn send_input_session_decodes_cmd_output() {
    let out = response::parse_receive(&fixture("run_cmd_send_input_get_output_response")).unwrap();
    let mut dec = StdoutDecoder::default();
    let mut lines = Vec::new();
    for chunk in &out.streams {
        lines.extend(dec.push(&chunk.data));
    }
    lines.extend(dec.finish());
    assert_eq!(
        lines,
        vec![
            "Microsoft Windows [Version 10.0.17763.107]",
            "(c) 2018 Microsoft Corporation. All rights reserved.",
            "C:\\Users\\rweber>echo hello world && exit",
            "hello world ",
        ]
    );
    assert_eq!(out.state.unwrap().exit_code, Some(0));
}
