//! End-to-end tests of the `aetherv` binary: real RabbitMQ, `aetherv sim` hosts over WinRM,
//! `aetherv worker` processes, AMQP producers. One integration binary (see STYLE.md).

mod api;
mod api_auth;
mod api_contract;
mod api_flows;
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
