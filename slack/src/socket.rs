//! Socket Mode: events and interactivity over a WebSocket that the bot opens (no public URL).
//! slack-morphism asks `apps.connections.open` for the WebSocket URL with the app-level token,
//! keeps the connections alive and acknowledges each envelope with what the handlers return.

use crate::app::Shared;
use crate::Client;
use slack_morphism::prelude::*;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Serves Socket Mode with `connections` WebSockets until `stop`.
pub async fn serve(
    client: Arc<Client>,
    shared: Arc<Shared>,
    app_token: SlackApiToken,
    connections: u32,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let env = Arc::new(SlackClientEventsListenerEnvironment::new(client));
    let mut callbacks = SlackSocketModeListenerCallbacks::<crate::Connector>::new();
    let s = Arc::clone(&shared);
    callbacks.command_callback = Box::new(
        move |ev: SlackCommandEvent, _c: Arc<Client>, _st: SlackClientEventsUserState| {
            let s = Arc::clone(&s);
            async move { UserCallbackResult::Ok(s.on_command(&ev)) }
        },
    );
    let s = Arc::clone(&shared);
    callbacks.interaction_callback = Box::new(
        move |ev: SlackInteractionEvent, _c: Arc<Client>, _st: SlackClientEventsUserState| {
            let s = Arc::clone(&s);
            async move { UserCallbackResult::Ok(s.on_interaction(ev).await) }
        },
    );
    callbacks.push_events_callback = Box::new(
        |_ev: SlackPushEventCallback, _c: Arc<Client>, _st: SlackClientEventsUserState| async {
            UserCallbackResult::Ok(())
        },
    );
    let config = SlackClientSocketModeConfig::new()
        .with_max_connections_count(connections.max(1))
        .with_initial_backoff_in_seconds(1);
    let listener = SlackClientSocketModeListener::new(&config, env, callbacks);
    listener
        .listen_for(&app_token)
        .await
        .map_err(|e| anyhow::anyhow!("apps.connections.open failed: {e}"))?;
    listener.start().await;
    stop.cancelled().await;
    listener.shutdown().await;
    Ok(())
}
