//! Templates are the operator's: a `job_status.hbs` in `templates_dir/slack/` replaces the
//! built-in one for the next status message, without a rebuild; one that cannot render stops
//! the bot at start with an error naming the file.

use super::*;
use aetherv_slack::blocks::SLACK_TEMPLATES;

fn template_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "aetherv-slack-tpl-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(dir.join("slack")).expect("dir");
    dir
}

fn builtin(name: &str) -> &'static str {
    SLACK_TEMPLATES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .expect("built-in template")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overridden_job_status_template_shapes_the_next_status_message() {
    let dir = template_dir();
    // The operator's copy of the built-in template, with one more block that uses the status
    // fields the template is given.
    let copy = builtin("job_status").replacen(
        "\"blocks\": [",
        "\"blocks\": [\n    {\"type\": \"context\", \"elements\": [{\"type\": \"mrkdwn\", \"text\": {{json (concat \"Site A · \" state \" · \" percent \"%\")}}}]},",
        1,
    );
    assert_ne!(copy, builtin("job_status"), "the copy adds a block");
    std::fs::write(dir.join("slack/job_status.hbs"), copy).expect("write");
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let fake = FakeSlack::start().await;
    let stop = CancellationToken::new();
    let mut opts = options(&fake, Mode::Socket { connections: 1 });
    opts.templates_dir = Some(dir.clone());
    tokio::spawn(aetherv_slack::run(
        engine(&b, Policy::default()),
        opts,
        stop.clone(),
    ));
    fake.connected().await;
    crate::replayed().await;
    fake.slash(
        "U0ALICE",
        "C0OPS",
        "deploy vm vm_name=web09 target_host=hv01",
    )
    .await;
    let status = fake
        .wait_for("chat.postMessage", Duration::from_secs(10), |b| {
            b.to_string().contains("Site A · queued · 0%")
        })
        .await;
    // The rest of the message is still the built-in layout: the status text itself.
    assert!(
        status.body.to_string().contains("vm.create on hv01"),
        "{}",
        status.body
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The error `aetherv_slack::run` stops with at start, with the templates of `dir`.
async fn start_error(dir: &std::path::Path) -> String {
    let fake = FakeSlack::start().await;
    let mut opts = options(&fake, Mode::Socket { connections: 1 });
    opts.templates_dir = Some(dir.to_path_buf());
    let err = aetherv_slack::run(
        engine(&broker(), Policy::default()),
        opts,
        CancellationToken::new(),
    )
    .await
    .expect_err("refused at start");
    format!("{err:#}")
}

#[tokio::test]
async fn a_template_that_cannot_render_stops_the_bot_at_start_naming_the_file() {
    let dir = template_dir();
    std::fs::write(
        dir.join("slack/job_status.hbs"),
        "{\"text\": \"{{no_such_field}}\", \"blocks\": []}",
    )
    .expect("write");
    let msg = start_error(&dir).await;
    assert!(
        msg.contains("slack/job_status.hbs") && msg.contains("does not render"),
        "{msg}"
    );
    // The same for a reply text under slack/text/.
    std::fs::remove_file(dir.join("slack/job_status.hbs")).expect("rm");
    std::fs::create_dir_all(dir.join("slack/text")).expect("dir");
    std::fs::write(dir.join("slack/text/help.hbs"), "{{#each commands}}{{/each").expect("write");
    let msg = start_error(&dir).await;
    assert!(msg.contains("slack/text/help.hbs"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}
