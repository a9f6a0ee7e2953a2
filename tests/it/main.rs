//! End-to-end tests of the `aetherv` binary: real RabbitMQ, `aetherv sim` hosts over WinRM,
//! `aetherv worker` processes, AMQP producers. One integration binary (see STYLE.md).

mod harness;
mod jobs;
mod peers;
