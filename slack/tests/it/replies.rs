//! Where answers go when the bot is not a member of the channel a command came from.

use super::*;

/// The answer reaches the user alone through the command's `response_url`, with how to invite
/// the bot; the refused post is not retried. In a channel the bot is in, answers are posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_reach_the_user_through_response_url_where_the_bot_is_not_a_member() {
    let b = broker();
    let bot = socket_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    fake.not_member("C0ELSEWHERE");
    fake.slash("U0ALICE", "C0ELSEWHERE", "vm list").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fake.responses().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer through response_url"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (id, msg) = fake.responses()[0].clone();
    assert_eq!(id, "vm_list", "the response_url of that command");
    assert!(msg["text"].as_str().is_some_and(|t| !t.is_empty()), "{msg}");
    assert!(
        msg.get("response_type").is_none_or(|t| t == "ephemeral"),
        "{msg}"
    );
    let hint = msg["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| b["type"] == "context" && b.to_string().contains("/invite"));
    assert!(hint, "says how to invite the bot: {msg}");
    let tried = |ch: &str| {
        fake.calls_of("chat.postMessage")
            .iter()
            .filter(|c| c.body["channel"] == ch)
            .count()
    };
    assert_eq!(tried("C0ELSEWHERE"), 1, "not_in_channel is not retried");

    fake.slash("U0ALICE", "C0OPS", "vm list").await;
    fake.wait_for("chat.postMessage", Duration::from_secs(5), |b| {
        b["channel"] == "C0OPS"
    })
    .await;
    assert_eq!(fake.responses().len(), 1, "members' channels get posts");
}

/// A Web API that takes a post but answers something the client cannot read (a bare
/// `{"ok": true}`, without the message's `ts`): the post is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_slack_took_is_not_sent_twice_when_its_answer_does_not_parse() {
    let b = broker();
    let bot = socket_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    fake.minimal_replies("chat.postMessage");
    fake.slash("U0ALICE", "C0OPS", "vm list").await;
    fake.wait_for("chat.postMessage", Duration::from_secs(5), |b| {
        b["channel"] == "C0OPS"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.calls_of("chat.postMessage").len(), 1, "posted once");
}

/// Issue 16, finding 4: a `response_url` that accepts and never answers holds up nothing: the
/// next command's post in another channel goes out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_url_that_never_answers_does_not_stall_later_writes() {
    let b = broker();
    let bot = socket_bot(&b, Policy::default()).await;
    let fake = &bot.fake;
    fake.not_member("C0ELSEWHERE");
    fake.hold_responses();
    fake.slash("U0ALICE", "C0ELSEWHERE", "vm list").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fake.responses().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no response_url call"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.slash("U0ALICE", "C0OPS", "vm list").await;
    fake.wait_for("chat.postMessage", Duration::from_secs(3), |b| {
        b["channel"] == "C0OPS"
    })
    .await;
}
