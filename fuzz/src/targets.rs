//! The fuzz targets, one per parser of outside input, each with a seed corpus of valid
//! inputs. A target runs the parser and whatever it leads to in the product (a parsed
//! interaction is also turned into an engine line), and ignores the `Result`: an error is
//! the right answer to most fuzzed input; a panic, a hang or unbounded memory is not.

use crate::Target;
use aetherv_core::schema::Forms;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

fn forms() -> &'static Forms {
    static F: OnceLock<Forms> = OnceLock::new();
    F.get_or_init(|| Forms::builtin().unwrap_or_else(|e| panic!("built-in forms: {e}")))
}

fn seeds(items: &[Value]) -> Vec<Vec<u8>> {
    items.iter().map(|v| v.to_string().into_bytes()).collect()
}

fn job_envelope(b: &[u8]) {
    if let Ok(job) = aetherv_core::JobEnvelope::from_slice(b) {
        let _ = aetherv_core::ops::JobSpec::parse(job.kind, &job.spec);
        let _ = serde_json::to_vec(&job);
    }
}

fn event(b: &[u8]) {
    if let Ok(ev) = aetherv_core::Event::from_slice(b) {
        let _ = ev.type_name();
        let _ = ev.is_terminal();
    }
}

fn agent_io(b: &[u8]) {
    let _ = aetherv_core::contract::agent::AgentRequest::from_slice(b);
    let _ = aetherv_core::contract::agent::AgentResult::from_output(&text(b));
}

fn command_line(b: &[u8]) {
    let _ = aetherv_core::command::parse(&text(b));
}

fn form_values(b: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(b) else {
        return;
    };
    let ctx = aetherv_core::validate::ValidationContext::default();
    for id in ["vm", "disk", "nic", "guest", "managed-deployment"] {
        if let Some(schema) = forms().get(id) {
            let _ = aetherv_core::validate::validate(schema, &v, &ctx);
        }
    }
}

fn soap(b: &[u8]) {
    use aetherv_winrm::response;
    let t = text(b);
    let _ = response::parse_receive(&t);
    let _ = response::parse_fault(&t);
    let _ = response::parse_shell_id(&t);
    let _ = response::parse_command_id(&t);
    let _ = response::error_from_reply(500, &t);
}

fn streams(b: &[u8]) {
    use aetherv_winrm::decode::{decode_clixml_escapes, StderrDecoder, StdoutDecoder};
    let mid = b.len() / 2;
    let mut out = StdoutDecoder::default();
    let _ = out.push(&b[..mid]);
    let _ = out.push(&b[mid..]);
    let _ = out.finish();
    let mut err = StderrDecoder::default();
    let _ = err.push(&b[..mid]);
    let _ = err.push(&b[mid..]);
    let _ = err.finish();
    let _ = decode_clixml_escapes(&text(b));
}

fn ntlm(b: &[u8]) {
    use aetherv_winrm::ntlm::{NtlmAcceptor, NtlmCredentials, NtlmInitiator};
    let initiator = NtlmInitiator::new(NtlmCredentials::new("admin", "pw", "CORP"));
    let _ = initiator.authenticate(b);
    let mut acceptor = NtlmAcceptor::new("HV01");
    let _ = acceptor.challenge(b);
    let mut acceptor = NtlmAcceptor::new("HV01");
    let mut client = NtlmInitiator::new(NtlmCredentials::new("admin", "pw", "CORP"));
    if acceptor.challenge(&client.negotiate()).is_ok() {
        let _ = acceptor.authenticate(b, |_, _| Some("pw".into()));
    }
}

fn kvp(b: &[u8]) {
    use aetherv_core::kvp;
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(b) {
        let items: BTreeMap<String, String> = m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect();
        let _ = kvp::unchunk(&items, "hlvmm.data.guest_la_uid");
        let _ = kvp::checksum(&items);
        let _ = kvp::guest_config(&m);
    }
    let t = text(b);
    let mid = (0..=t.len() / 2)
        .rev()
        .find(|i| t.is_char_boundary(*i))
        .unwrap_or(0);
    let (k, v) = t.split_at(mid);
    let _ = kvp::chunk(k, v);
}

fn discord_interaction(b: &[u8]) {
    if let Ok(ia) = serde_json::from_slice::<aetherv_discord::interaction::Interaction>(b) {
        interaction_parts(&ia);
    }
}

/// The Gateway path: serenity's model of the dispatch, converted to ours, then the same reads,
/// and a modal answer turned into action rows.
fn discord_gateway_dispatch(b: &[u8]) {
    if let Ok(ia) = aetherv_discord::gateway::dispatched_interaction(b) {
        interaction_parts(&ia);
    }
    if let Ok(answer) = serde_json::from_slice::<Value>(b) {
        let _ = aetherv_discord::gateway::action_rows(answer);
    }
}

fn interaction_parts(ia: &aetherv_discord::interaction::Interaction) {
    use aetherv_discord::{form, interaction};
    let _ = ia.principal();
    if let Some(data) = &ia.data {
        let _ = interaction::command_line(data);
        let _ = interaction::deploy_of(data);
        let _ = interaction::focused(data);
        let _ = interaction::vote_of(&data.custom_id);
        let _ = form::submitted(&data.components);
        for p in [form::PAGE_PREFIX, form::OPEN_PREFIX] {
            if let Some(rest) = data.custom_id.strip_prefix(p) {
                let _ = form::draft_page(rest);
            }
        }
    }
}

fn discord_signature(b: &[u8]) {
    use aetherv_discord::verify::Verifier;
    static V: OnceLock<Option<Verifier>> = OnceLock::new();
    let v = V.get_or_init(|| {
        Verifier::from_hex("ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c").ok()
    });
    let Some(v) = v else { return };
    let t = text(b);
    let mut parts = t.splitn(3, '\n');
    let (sig, ts, body) = (parts.next(), parts.next(), parts.next().unwrap_or_default());
    let _ = v.verify(sig, ts, body.as_bytes(), std::time::SystemTime::now());
    let _ = Verifier::from_hex(&t);
}

fn slack_payloads(b: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<Value>(b) {
        let _ = aetherv_slack::blocks::check_message(&v);
        let _ = aetherv_slack::blocks::check_modal(&v);
    }
}

/// `aetherv config check` over any text (no file it names exists, no variable is set).
fn aetherv_yaml(b: &[u8]) {
    let t = text(b);
    let none = |_: &str| None;
    let ctx = crate::check::Ctx {
        base: std::path::Path::new("/nonexistent"),
        env: &none,
    };
    for p in crate::check::check(&t, &ctx) {
        // A problem never repeats what it could not parse: a message is built from the
        // schema's words, paths and names the file gave as keys, never from a value.
        assert!(p.message.len() < 400, "an unbounded problem message");
    }
}

fn yaml_configs(b: &[u8]) {
    let t = text(b);
    let _ = aetherv_core::schema::FormSchema::from_yaml(&t);
    let _ = aetherv_core::approval::Policy::from_yaml(&t);
    let _ = aetherv_core::rbac::Rbac::from_yaml(&t);
    let _ = aetherv_slack::config::SlackConfig::from_yaml(&t);
    let _ = aetherv_discord::config::DiscordConfig::from_yaml(&t);
}

fn managed_values() -> Value {
    json!({
        "vm_name": "web-01", "gb_ram": 4, "cpu_cores": 2, "target_host": "hv01",
        "image_name": "Windows Server 2022", "network": "prod", "guest_la_uid": "admin",
        "guest_la_pw": "S3cret-pw", "guest_v4_ip_addr": "10.0.0.5", "guest_v4_cidr_prefix": 24,
        "guest_v4_default_gw": "10.0.0.1", "guest_v4_dns1": "10.0.0.2",
    })
}

/// Every target with its seeds.
pub fn all() -> Vec<Target> {
    let job = json!({
        "v": 1, "job_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "kind": "deployment.managed",
        "target": {"host": "hv01"}, "spec": managed_values(),
        "requested_by": {"platform": "slack", "user_id": "U1"},
        "requested_at": "2026-01-01T00:00:00Z",
    });
    let ev = json!({
        "v": 1, "event_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "job_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "seq": 3,
        "at": "2026-01-01T00:00:00Z", "type": "job.log",
        "payload": {"lines": [{"stream": "stdout", "text": "hello"}]},
    });
    let interaction = json!({
        "id": "1", "application_id": "3", "type": 2, "token": "t", "version": 1,
        "member": {"user": {"id": "100"}, "roles": ["200"]}, "channel_id": "4",
        "data": {"name": "aether", "options": [{"name": "deploy", "type": 2, "options": [
            {"name": "managed", "type": 1, "options": [{"name": "target_host", "type": 3, "value": "hv01"}]}]}],
            "custom_id": "aether:page:0f8fad5b-d9cb-469f-a165-70867728950e:0",
            "components": [{"type": 18, "component": {"type": 4, "custom_id": "vm_name", "value": "a"}}]},
    });
    let receive = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><s:Body><rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="C1">aGVsbG8=</rsp:Stream><rsp:CommandState CommandId="C1" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"><rsp:ExitCode>0</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse></s:Body></s:Envelope>"#;
    let clixml = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><S S=\"Error\">bad_x000D__x000A_</S></Objs>";
    let negotiate = aetherv_winrm::ntlm::NtlmInitiator::new(
        aetherv_winrm::ntlm::NtlmCredentials::new("a", "b", "c"),
    )
    .negotiate();
    let policy = "rules:\n  - name: all\n    approvals: 1\n    groups: [approvers]\n";
    let roles = "groups:\n  - name: ops\n    roles: [operator]\n    members: [\"slack:U1\"]\n";
    vec![
        Target {
            name: "job_envelope",
            seeds: seeds(&[job]),
            run: job_envelope,
        },
        Target {
            name: "event",
            seeds: seeds(&[ev]),
            run: event,
        },
        Target {
            name: "agent_io",
            seeds: vec![
                br#"{"v":1,"operation":"vm.create","spec":{"vm_name":"a"},"correlation_id":"c"}"#
                    .to_vec(),
                b"##aetherv-result {\"v\":1,\"status\":\"ok\",\"data\":{}}\n".to_vec(),
            ],
            run: agent_io,
        },
        Target {
            name: "command_line",
            seeds: [
                "deploy managed vm_name=web01 gb_ram=4 guest_la_pw=\"a b\"",
                "vm delete web01 --delete-disks --force",
                "jobs --mine --limit 5",
                "approve 0f8fad5b",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
            run: command_line,
        },
        Target {
            name: "form_values",
            seeds: seeds(&[managed_values()]),
            run: form_values,
        },
        Target {
            name: "soap",
            seeds: vec![receive.as_bytes().to_vec()],
            run: soap,
        },
        Target {
            name: "streams",
            seeds: vec![clixml.as_bytes().to_vec()],
            run: streams,
        },
        Target {
            name: "ntlm",
            seeds: vec![negotiate],
            run: ntlm,
        },
        Target {
            name: "kvp",
            seeds: seeds(&[
                json!({"hlvmm.data.guest_la_uid": "admin", "hlvmm.data.guest_la_uid._0": "x"}),
            ]),
            run: kvp,
        },
        Target {
            name: "discord_interaction",
            seeds: seeds(&[interaction]),
            run: discord_interaction,
        },
        Target {
            name: "discord_signature",
            seeds: vec![b"00ab\n1700000000\n{\"type\":1}".to_vec()],
            run: discord_signature,
        },
        Target {
            name: "slack_payloads",
            seeds: seeds(&[
                json!({"text": "hi", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "a"}}]}),
            ]),
            run: slack_payloads,
        },
        Target {
            name: "aetherv_yaml",
            seeds: vec![
                include_bytes!("../../config/aetherv.example.yaml").to_vec(),
                b"broker:\n  url: amqp://u:p@h/\nworker:\n  hosts:\n    - name: a\n      auth: {kind: ntlm}\n".to_vec(),
            ],
            run: aetherv_yaml,
        },
        Target {
            name: "discord_gateway_dispatch",
            seeds: seeds(&[
                json!({"id": "1", "application_id": "2", "type": 2, "token": "t", "version": 1,
                    "channel_id": "3", "guild_id": "4", "locale": "en-US", "guild_locale": "en-US",
                    "entitlements": [], "app_permissions": "0", "attachment_size_limit": 10_485_760,
                    "authorizing_integration_owners": {"0": "4"}, "context": 0,
                    "member": {"user": {"id": "5", "username": "u", "discriminator": "0",
                        "global_name": null, "avatar": null, "public_flags": 0}, "roles": [],
                        "joined_at": "2024-01-01T00:00:00.000000+00:00", "deaf": false,
                        "mute": false, "flags": 0, "pending": false, "nick": null, "avatar": null,
                        "premium_since": null, "permissions": "0"},
                    "data": {"id": "6", "name": "aether", "type": 1, "options":
                        [{"name": "vm", "type": 2, "options": [{"name": "list", "type": 1, "options": []}]}]}}),
            ]),
            run: discord_gateway_dispatch,
        },
        Target {
            name: "yaml_configs",
            seeds: vec![
                policy.as_bytes().to_vec(),
                roles.as_bytes().to_vec(),
                b"channel: C1\nroles: r\npolicy: p\n".to_vec(),
                include_bytes!("../../schemas/vm.yaml").to_vec(),
            ],
            run: yaml_configs,
        },
    ]
}
