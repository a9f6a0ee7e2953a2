//! Issue 16: findings of outside testing in the engine (replies to lines that do not parse).

use super::*;

/// Finding 3: no reply repeats a word of a line that does not parse (console and Slack both
/// render `user_text`, so the console texts and the reply's own fields are checked).
#[tokio::test]
async fn replies_to_lines_that_do_not_parse_never_repeat_their_values() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let mut e = engine(&b, policy(1, 3600), &["hv01"]);
    for line in [
        "deplyo guest_la_pw=Hunter2Secret vm_name=t1",
        "deploy vm_name=t1 guest_la_pw= Hunter2Secret",
        "Hunter2Secret",
        "disk add web01 Hunter2Secret",
        "vm delete web01 --Hunter2Secret",
    ] {
        let out = e
            .handle_line(&Principal::console("alice"), line)
            .await
            .expect("handled");
        assert!(
            matches!(out.as_slice(), [Reply::ParseError { .. }]),
            "{line}: {out:?}"
        );
        let shown = format!("{out:?} {:?}", texts(&out)).to_ascii_lowercase();
        assert!(!shown.contains("hunter2"), "{line}: {shown}");
    }
}

/// A front door fed from a channel that keeps what `handle` returned.
struct Lines {
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    out: tokio::sync::mpsc::UnboundedSender<Vec<Reply>>,
}

impl aetherv_bot::serve::Adapter for Lines {
    type Input = String;

    async fn recv(&mut self) -> Option<String> {
        self.rx.recv().await
    }

    async fn handle(
        &mut self,
        engine: &mut Engine,
        line: String,
    ) -> anyhow::Result<aetherv_bot::serve::Flow> {
        let replies = engine
            .handle_line(&Principal::console("alice"), &line)
            .await?;
        let _ = self.out.send(replies);
        Ok(aetherv_bot::serve::Flow::Continue)
    }

    async fn deliver(&mut self, _engine: &Engine, _replies: Vec<Reply>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Finding 8: a bot that takes over answers "catching up" until it has replayed the stream,
/// then answers from the replayed state (alice's job, not "No jobs.").
#[tokio::test]
async fn a_bot_taking_over_says_it_is_catching_up_until_the_replay_is_done() {
    let b = broker();
    b.declare_host("hv01").await.expect("declare");
    let mut first = engine(&b, policy(1, 3600), &["hv01"]);
    say(
        &mut first,
        "alice",
        "deploy vm vm_name=web01 target_host=hv01",
    )
    .await;
    assert_eq!(first.jobs().len(), 1, "the first bot opened a job");

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (out_tx, mut out) = tokio::sync::mpsc::unbounded_channel();
    tx.send("jobs --mine".to_string()).expect("send");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let standby = engine(&b, policy(1, 3600), &["hv01"]);
    let serving = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let mut lines = Lines { rx, out: out_tx };
            aetherv_bot::serve::serve(standby, &mut lines, "standby", shutdown).await
        }
    });
    let early = out.recv().await.expect("an answer");
    let text = texts(&early).join("\n");
    assert!(text.contains("catching up"), "{text}");

    tokio::time::sleep(aetherv_bot::serve::REPLAY_IDLE * 3).await;
    tx.send("jobs --mine".to_string()).expect("send");
    let later = out.recv().await.expect("an answer");
    assert!(
        matches!(later.as_slice(), [Reply::Listing(aetherv_bot::reply::Listing::Jobs { jobs, .. })] if jobs.len() == 1),
        "{later:?}"
    );
    shutdown.cancel();
    serving.await.expect("join").expect("serve");
}
