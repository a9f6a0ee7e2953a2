//! End-to-end tests of the `aetherv` binary: real RabbitMQ, `aetherv sim` hosts over WinRM,
//! `aetherv worker` processes, AMQP producers. One integration binary (see STYLE.md).

mod bot;
mod config;
mod deploy;
mod discord;
mod harness;
mod hosts;
mod inproc;
mod jobs;
mod ops;
mod peers;
mod requests;
mod requests_preflight;
mod requests_slack;
mod slack;
mod status_page;
