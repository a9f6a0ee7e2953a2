//! The deploy forms on Discord: choice fields as command options, the rest in modal pages
//! chained by buttons, a page with errors reopened with its values (never a secret) and each
//! error under its field, parameter sets on pages of their own, Submit through the engine.

use super::*;
use fake::Call;
use serde_json::json;

/// A modal submit by `user` of modal `custom_id` with `values`, in the current label shape
/// (type 18 around each input) or the legacy one (action rows).
pub fn modal_submit(
    user: &str,
    custom_id: &str,
    values: &[(&str, &str)],
    token: &str,
    labels: bool,
) -> String {
    let components: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, (id, v))| {
            let input = json!({ "type": 4, "id": i * 2 + 2, "custom_id": id, "value": v });
            if labels {
                json!({ "type": 18, "id": i * 2 + 1, "component": input })
            } else {
                json!({ "type": 1, "components": [input] })
            }
        })
        .collect();
    json!({
        "id": "786008729715212341",
        "application_id": APP,
        "type": 5,
        "token": token,
        "version": 1,
        "guild_id": GUILD,
        "channel_id": OPS,
        "member": { "user": { "id": user, "username": "someone" }, "roles": [] },
        "data": { "custom_id": custom_id, "components": components },
    })
    .to_string()
}

/// A modal's components in the label shape: over the Gateway the bot sends action rows, each
/// input's label carrying its error (`Label ⚠ error`); they are read back as labels.
fn labels(modal: &Value) -> Vec<Value> {
    modal["data"]["components"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            if c["type"] != 1 {
                return c.clone();
            }
            let inner = c["components"][0].clone();
            let label = inner["label"].as_str().unwrap_or_default();
            let description = label.find('⚠').map(|i| &label[i..]).unwrap_or_default();
            json!({ "type": 18, "label": label, "description": description, "component": inner })
        })
        .collect()
}

/// The ids of a modal's text inputs.
fn inputs(modal: &Value) -> Vec<String> {
    labels(modal)
        .iter()
        .filter_map(|c| c["component"]["custom_id"].as_str().map(str::to_string))
        .collect()
}

fn input(modal: &Value, id: &str) -> Value {
    labels(modal)
        .into_iter()
        .find(|c| c["component"]["custom_id"] == id)
        .unwrap_or(Value::Null)
}

/// The answer edit of the deferred interaction `token`.
async fn answered(b: &Bot, token: &str) -> Call {
    b.fake
        .wait_for(Duration::from_secs(5), |c| {
            c.method == "PATCH" && c.path == format!("/webhooks/{APP}/{token}/messages/@original")
        })
        .await
}

/// The buttons of a message: (label, custom_id).
fn buttons(body: &Value) -> Vec<(String, String)> {
    body["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .map(|b| {
            (
                b["label"].as_str().unwrap_or_default().to_string(),
                b["custom_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn button(body: &Value, label_starts: &str) -> String {
    buttons(body)
        .into_iter()
        .find(|(l, _)| l.starts_with(label_starts))
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("no button {label_starts}: {body}"))
}

/// Deploys `form` as `user`: the command with `options`, each page of `pages` filled in
/// turn (by "Continue"), then Submit. Returns the submission's answer.
pub async fn deploy(
    b: &Bot,
    user: &str,
    form: &str,
    options: &Value,
    pages: &[&[(&str, &str)]],
    token: &str,
) -> Call {
    let (status, mut modal) = b
        .post(&command(user, &[], &["deploy", form], options, token))
        .await;
    assert_eq!(status, 200);
    let mut last = None;
    for (i, values) in pages.iter().enumerate() {
        assert_eq!(modal["type"], 9, "{modal}");
        let id = modal["data"]["custom_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let t = format!("{token}-p{i}");
        let (_, ack) = b
            .post(&modal_submit(user, &id, values, &t, i % 2 == 0))
            .await;
        assert_eq!(ack, json!({ "type": 5, "data": { "flags": 64 } }));
        let edit = answered(b, &t).await;
        if i + 1 < pages.len() {
            let next = button(&edit.body, "Continue");
            modal = b.post(&click(user, &[], &next, OPS, "1", &t)).await.1;
        }
        last = Some(edit);
    }
    let edit = last.expect("a page");
    let submit = button(&edit.body, "Submit");
    let t = format!("{token}-submit");
    let (_, ack) = b.post(&click(user, &[], &submit, OPS, "1", &t)).await;
    assert_eq!(ack, json!({ "type": 5, "data": { "flags": 64 } }));
    answered(b, &t).await
}

/// `/aether deploy managed` on hv01 by Alice: the form's first page.
async fn open_managed(b: &Bot, token: &str) -> Value {
    let body = command(
        ALICE,
        &[],
        &["deploy", "managed"],
        &managed_options(),
        token,
    );
    b.post(&body).await.1
}

/// The options of a managed deployment on hv01.
fn managed_options() -> Value {
    json!([
        { "name": "gb_ram", "type": 4, "value": 4 },
        { "name": "cpu_cores", "type": 4, "value": 2 },
        { "name": "target_host", "type": 3, "value": "hv01" },
        { "name": "image_name", "type": 3, "value": "Ubuntu 24.04" },
        { "name": "network", "type": 3, "value": "prod" },
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_has_the_choice_fields_and_the_modal_pages_the_rest_five_at_most() {
    let b = bot(&broker(), one_approval()).await;
    let reg = b
        .fake
        .wait_for(Duration::from_secs(5), |c| c.method == "PUT")
        .await;
    let deploy = reg.body[0]["options"]
        .as_array()
        .and_then(|o| o.iter().find(|g| g["name"] == "deploy"))
        .cloned()
        .expect("deploy group");
    let managed = deploy["options"]
        .as_array()
        .and_then(|o| o.iter().find(|s| s["name"] == "managed"))
        .cloned()
        .expect("managed");
    let names: Vec<&str> = managed["options"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["name"].as_str())
        .collect();
    for choice in [
        "target_host",
        "image_name",
        "network",
        "gb_ram",
        "os_family",
    ] {
        assert!(names.contains(&choice), "{choice} in {names:?}");
    }
    for text in ["vm_name", "guest_la_uid", "guest_la_pw", "guest_v4_ip_addr"] {
        assert!(!names.contains(&text), "{text} is not an option");
    }
    // Discord: required options before optional ones, at most 25.
    let required: Vec<bool> = managed["options"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| o["required"] == true)
        .collect();
    assert!(required.windows(2).all(|w| w[0] || !w[1]), "{required:?}");
    assert!(names.len() <= 25);

    let modal = open_managed(&b, "tok-m").await;
    assert_eq!(modal["type"], 9, "{modal}");
    let ids = inputs(&modal);
    assert!(!ids.is_empty() && ids.len() <= 5, "{ids:?}");
    assert!(ids.contains(&"vm_name".to_string()), "{ids:?}");
    assert!(modal["data"]["title"]
        .as_str()
        .is_some_and(|t| t.chars().count() <= 45));
    assert!(modal["data"]["custom_id"]
        .as_str()
        .is_some_and(|t| t.len() <= 100));
}

/// A managed deployment of `vm` on hv01 as a user would fill it in: autocomplete for the
/// image, page 1 with an invalid name (errors on the page, values kept, the secret not put
/// back), corrected with the secret left blank (kept), the Ansible page, Submit. Returns the
/// submission's answer.
pub async fn correcting_deploy(b: &Bot, vm: &str, secret: &str, token: &str) -> Call {
    let (_, choices) = b.post(&autocomplete(ALICE, "image_name", "ub")).await;
    assert_eq!(choices["type"], 8, "{choices}");
    let offered = choices["data"]["choices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(offered.len() <= 25);
    let modal = open_managed(b, token).await;
    let page = modal["data"]["custom_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let values = [
        ("vm_name", "bad name!"),
        ("guest_la_uid", "admin"),
        ("guest_la_pw", secret),
    ];
    let t = |n: u8| format!("{token}-{n}");
    let (_, ack) = b
        .post(&modal_submit(ALICE, &page, &values, &t(1), false))
        .await;
    assert_eq!(ack["type"], 5);
    let edit = answered(b, &t(1)).await;
    let text = edit.body["content"].as_str().unwrap_or_default();
    assert!(text.contains("VM name"), "{text}");
    assert_eq!(edit.body["flags"], 64);
    // Reopened: the values kept, the error under its field, the secret not put back.
    let fix = button(&edit.body, "Correct");
    let (_, again) = b.post(&click(ALICE, &[], &fix, OPS, "1", &t(2))).await;
    assert_eq!(again["type"], 9, "{again}");
    assert_eq!(input(&again, "vm_name")["component"]["value"], "bad name!");
    assert!(input(&again, "vm_name")["description"]
        .as_str()
        .is_some_and(|d| d.starts_with('⚠')));
    assert_eq!(input(&again, "guest_la_uid")["component"]["value"], "admin");
    assert!(input(&again, "guest_la_pw")["component"]
        .get("value")
        .is_none());
    assert_eq!(input(&again, "guest_la_pw")["component"]["required"], false);
    // Somebody else cannot continue Alice's form.
    let (_, theirs) = b.post(&click(EVE, &[], &fix, OPS, "1", &t(3))).await;
    assert!(theirs["data"]["content"]
        .as_str()
        .is_some_and(|t| t.contains("someone else")));
    // Corrected, the secret left blank (kept): ready, with the optional sets offered.
    let fixed = [("vm_name", vm), ("guest_la_pw", "")];
    b.post(&modal_submit(ALICE, &page, &fixed, &t(4), true))
        .await;
    let ready = answered(b, &t(4)).await;
    let labels: Vec<String> = buttons(&ready.body).into_iter().map(|(l, _)| l).collect();
    assert!(labels.iter().any(|l| l == "Submit"), "{labels:?}");
    assert!(
        labels.iter().any(|l| l.starts_with("Add Ansible")),
        "{labels:?}"
    );
    // The Ansible page: a parameter set of its own.
    let add = button(&ready.body, "Add Ansible");
    let (_, set) = b.post(&click(ALICE, &[], &add, OPS, "1", &t(5))).await;
    let set_inputs = inputs(&set);
    assert!(
        !set_inputs.is_empty() && set_inputs.iter().all(|f| f.starts_with("cnf_ansible")),
        "{set_inputs:?}"
    );
    let set_id = set["data"]["custom_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ansible = [
        ("cnf_ansible_ssh_user", "deploy"),
        (
            "cnf_ansible_ssh_key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q test",
        ),
    ];
    b.post(&modal_submit(ALICE, &set_id, &ansible, &t(6), true))
        .await;
    let after = answered(b, &t(6)).await;
    let submit = button(&after.body, "Submit");
    b.post(&click(ALICE, &[], &submit, OPS, "1", &t(7))).await;
    let done = answered(b, &t(7)).await;
    assert!(
        done.body["content"]
            .as_str()
            .is_some_and(|t| t.contains("submitted")),
        "{}",
        done.body
    );
    // A submitted form is gone.
    let (_, late) = b.post(&click(ALICE, &[], &submit, OPS, "1", &t(8))).await;
    assert_eq!(late, json!({ "type": 5, "data": { "flags": 64 } }));
    let gone = answered(b, &t(8)).await;
    assert!(gone.body["content"]
        .as_str()
        .is_some_and(|t| t.contains("expired")));
    done
}

/// An autocomplete interaction by `user` for option `name` of `/aether deploy managed`, typed
/// so far as `typed`, with the target host already chosen.
pub fn autocomplete(user: &str, name: &str, typed: &str) -> String {
    json!({
        "id": "786008729715212345",
        "application_id": APP,
        "type": 4,
        "token": "tok-auto",
        "version": 1,
        "guild_id": GUILD,
        "channel_id": OPS,
        "member": { "user": { "id": user, "username": "someone" }, "roles": [] },
        "data": { "id": "771825006014889984", "name": "aether", "type": 1, "options": [
            { "name": "deploy", "type": 2, "options": [
                { "name": "managed", "type": 1, "options": [
                    { "name": "target_host", "type": 3, "value": "hv01" },
                    { "name": name, "type": 3, "value": typed, "focused": true }
                ]}
            ]}
        ]},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_errors_comes_back_with_its_values_and_no_secret_then_a_set_page_and_submit() {
    let br = broker();
    br.declare_host("hv01").await.expect("declare");
    let b = bot(&br, one_approval()).await;
    let secret = "S3cret-pw-never-shown";
    correcting_deploy(&b, "web21", secret, "tok-e").await;
    let approval = b
        .fake
        .wait_for(Duration::from_secs(5), |c| {
            c.method == "POST" && c.path == format!("/channels/{APPROVALS}/messages")
        })
        .await;
    let request = approval.body["content"].as_str().unwrap_or_default();
    assert!(request.contains("web21"), "{request}");
    // The secret never reached Discord.
    for c in b.fake.calls() {
        assert!(
            !String::from_utf8_lossy(&c.raw).contains(secret),
            "{} {}",
            c.method,
            c.path
        );
    }
}
