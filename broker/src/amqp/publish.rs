//! Publishing: the confirm-mode channel pool for `mandatory` job publishes, the pipelined
//! events channel, dead-letter copies, and the admin channel for declarations.
//!
//! Job publishes hold a channel each for the whole publish-and-confirm (see the module docs of
//! `amqp` for why); a publish future dropped before its confirm discards its channel, so a
//! late confirm or return can never be attributed to another publish.

use super::fields::{self, short};
use super::Live;
use crate::{BrokerError, PublishError, Topology};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use std::sync::Mutex;
use tokio::sync::Semaphore;

pub(crate) fn confirmation_result(
    confirm: &Confirmation,
    routing_key: &str,
) -> Result<(), PublishError> {
    match confirm {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable {
            routing_key: routing_key.to_owned(),
        }),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
    }
}

impl Live {
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The admin channel (declarations, passive lookups), re-created when a failed declaration
    /// closed it. Admin operations are serialized by holding the returned guard while using
    /// the channel: lapin matches replies per channel by method type, so two concurrent
    /// declarations could swap their `declare-ok` replies, and a failing one would close the
    /// channel under the other.
    pub(super) async fn admin_channel(
        &self,
    ) -> Result<(tokio::sync::MutexGuard<'_, Option<Channel>>, Channel), BrokerError> {
        let mut slot = self.admin.lock().await;
        let ch = match &*slot {
            Some(ch) if ch.status().connected() => ch.clone(),
            _ => {
                let ch = self.conn.create_channel().await?;
                *slot = Some(ch.clone());
                ch
            }
        };
        Ok((slot, ch))
    }

    /// Publishes an event on the shared events channel (`mandatory`) and waits for its
    /// confirm. The lock covers only the send, so confirms are pipelined while sequence
    /// numbers stay in send order. If the stream queue is gone, every event comes back, so
    /// pairing a return with whichever confirm resolves next is still right for events.
    pub(super) async fn publish_event(
        &self,
        exchange: ShortString,
        key: ShortString,
        body: &[u8],
    ) -> Result<Confirmation, BrokerError> {
        let pending = self.send_event(exchange, key, body).await?;
        Ok(pending.await?)
    }

    /// Sends an event on the shared events channel (`mandatory`) and returns its confirm
    /// without waiting for it: sends keep their order (the lock covers the send), and the
    /// caller awaits the confirms later, in order (see `PendingEvent`).
    pub(super) async fn send_event(
        &self,
        exchange: ShortString,
        key: ShortString,
        body: &[u8],
    ) -> Result<PublisherConfirm, BrokerError> {
        let mut slot = self.events.lock().await;
        let ch = match &*slot {
            Some(ch) if ch.status().connected() => ch.clone(),
            _ => {
                let ch = self.conn.create_channel().await?;
                ch.confirm_select(ConfirmSelectOptions::default()).await?;
                *slot = Some(ch.clone());
                ch
            }
        };
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        Ok(ch
            .basic_publish(
                exchange,
                key,
                options,
                body,
                fields::message_properties(None),
            )
            .await?)
    }

    /// Publishes a copy of a message to the dead-letter exchange with reason headers.
    pub(crate) async fn publish_dead_letter(
        &self,
        topology: &Topology,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
    ) -> Result<(), PublishError> {
        let exchange = short(&topology.dead_letter_exchange())?;
        let confirm = self
            .jobs
            .publish(
                &self.conn,
                exchange,
                short(routing_key)?,
                body,
                fields::message_properties(Some(headers)),
            )
            .await?;
        confirmation_result(&confirm, routing_key)
    }
}

/// Confirm-mode channels for `mandatory` publishes, each used by one publish at a time.
pub(super) struct ChannelPool {
    free: Mutex<Vec<Channel>>,
    permits: Semaphore,
}

impl ChannelPool {
    pub(super) fn new(size: usize) -> Self {
        ChannelPool {
            free: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
        }
    }

    pub(super) async fn publish(
        &self,
        conn: &Connection,
        exchange: ShortString,
        key: ShortString,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<Confirmation, BrokerError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| BrokerError::Closed)?;
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.retain(|ch| ch.status().connected());
            free.pop()
        };
        let ch = match reused {
            Some(ch) => ch,
            None => {
                let ch = conn.create_channel().await?;
                ch.confirm_select(ConfirmSelectOptions::default()).await?;
                ch
            }
        };
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        // When this future is dropped before the confirm, the channel is dropped (and closed)
        // rather than returned, so a late confirm or return never reaches another publish.
        let confirm = ch
            .basic_publish(exchange, key, options, body, props)
            .await?
            .await?;
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(ch);
        Ok(confirm)
    }
}
