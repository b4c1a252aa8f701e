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
