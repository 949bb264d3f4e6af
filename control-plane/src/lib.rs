//! Gantry's control plane (`gantry serve`) and its command-line client, as a library so
//! tests and benchmarks drive the same code the `gantry` binary runs.
//!
//! - [`domain`]: executions, statuses, triggers, claims, error codes, log lines.
//! - [`registry`]: function manifests, their validation, versions and content hashes.
//! - [`store`]: durable state behind the [`store::Store`] trait (SQLite by default).
//! - [`cluster`]: the other nodes' loads, shared through the store.
//! - [`destinations`]: final results POSTed, signed, to callback and destination URLs.
//! - [`dispatch`]: admission, per-function queues and concurrency, running executions.
//! - [`runtime`]: where instances run (host processes, docker containers).
//! - [`schema`]: JSON Schema checks of inputs and outputs.
//! - [`telemetry`]: spans of every execution, exported over OTLP.
//! - [`logs`]: captured stdout/stderr, capped per execution, followed live.
//! - [`access`]: API tokens, roles and what each route needs.
//! - [`secrets`]: sealed secret values and their masking.
//! - [`datadir`]: the data directory's private permissions.
//! - [`api`]: the HTTP API (`app`, `run`).
//! - [`wire`]: the JSON bodies the API and the CLI exchange.
//! - [`config`]: `gantry serve` settings.
//! - [`cli`]: the client commands.

pub mod access;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod datadir;
pub mod destinations;
pub mod dispatch;
pub mod domain;
pub mod logs;
pub mod metrics;
pub mod nodes;
pub mod pool;
pub mod registry;
pub mod retention;
pub mod runtime;
pub mod schedule;
pub mod schema;
pub mod secrets;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod wire;
