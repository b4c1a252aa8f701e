//! Kith, a Matrix homeserver.
//!
//! Layers, dependencies pointing down: `api` (HTTP) → `service` (the domain) →
//! `storage` (SQLite and PostgreSQL). `app` wires them together and
//! `http_server` accepts the connections; `cli` holds the operator commands.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod http_server;
pub mod metrics;
pub mod service;
pub mod storage;

/// The cores this process may use (2 when unknown): sizes thread and connection pools.
pub fn cores() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}
