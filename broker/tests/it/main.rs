//! Integration tests of aetherv-broker: one contract suite run against both brokers, plus
//! RabbitMQ-only tests (declared arguments, reconnection, cross-process single active consumer).
//!
//! RabbitMQ tests need a broker at `AETHERV_AMQP_URL` (default
//! amqp://guest:guest@127.0.0.1:5672/%2f) and fail loudly without one.
#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod amqp_only;
mod cluster;
mod contract;
mod support;

/// Instantiates every contract test for both implementations, each under a 60 s time limit.
macro_rules! contract_suite {
    ($($name:ident),* $(,)?) => {
        mod inproc {
            $(
                #[tokio::test]
                async fn $name() {
                    let b = crate::support::inproc().await;
                    tokio::time::timeout(std::time::Duration::from_secs(60), crate::contract::$name(b))
                        .await
                        .expect("test timed out");
                }
            )*
        }
        mod amqp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = crate::support::amqp().await;
                    tokio::time::timeout(std::time::Duration::from_secs(60), crate::contract::$name(b.clone()))
                        .await
                        .expect("test timed out");
                    crate::support::cleanup(&b).await;
                }
            )*
        }
    };
}

contract_suite!(
    declare_host_is_idempotent,
    publish_consume_ack,
    unknown_host_is_unroutable,
    undecodable_messages_are_dead_lettered_with_reason,
    fifo_per_host,
    single_active_consumer_and_handover,
    requeue_redelivers_at_the_head,
    no_job_lost_or_reordered_under_consumer_churn,
    queue_depth_counts_waiting_jobs,
    delivery_limit_dead_letters,
    worker_dead_letters_with_its_reason,
    events_replay_from_first_and_offset_then_tail,
    sent_events_are_stored_in_send_order_once_confirmed,
    events_replay_from_next_sees_only_new_events,
    events_replay_from_a_timestamp,
    one_leader_per_role_and_handover,
    close_ends_consumers_and_refuses_publishes,
);
