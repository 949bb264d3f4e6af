//! Gantry's control plane (`gantry serve`) and its command-line client, as a library so
//! tests and benchmarks drive the same code the `gantry` binary runs.
//!
//! - [`registry`]: function manifests, their validation, versions and content hashes.
//! - [`store`]: durable state behind the [`store::Store`] trait (SQLite by default).
//! - [`dispatch`]: admission, per-function queues and concurrency, running executions.
//! - [`runtime`]: where instances run (`process` today).
//! - [`schema`]: JSON Schema checks of inputs and outputs.
//! - [`logs`]: captured stdout/stderr, capped per execution, followed live.
//! - [`api`]: the HTTP API (`app`, `run`).
//! - [`config`]: `gantry serve` settings.
//! - [`cli`]: the client commands.

pub mod api;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod logs;
pub mod metrics;
pub mod pool;
pub mod registry;
pub mod runtime;
pub mod schema;
pub mod serve;
pub mod store;
