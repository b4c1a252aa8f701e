//! Black-box test harness for Kith.
//!
//! [`TestServer`] builds the `kith` binary once per test process, starts it as a
//! child process on a fresh data directory (and, when `TEST_DATABASE_URL` is set,
//! a fresh PostgreSQL database), and parses the listening addresses from its log.
//! [`Client`] is a small JSON client for the client-server API.
//!
//! The `kith-load` binary (see `src/bin/kith-load.rs` and [`load`]) is a load
//! generator that uses the same HTTP conventions.

pub mod binary;
pub mod client;
pub mod db;
pub mod load;
pub mod server;
pub mod sync;

pub use binary::kith_bin;
pub use client::{Client, Resp, assert_err, assert_ok, errcode, register_with_shared_secret, shared_secret_mac};
pub use server::{CliOutput, StartFailure, TestServer, TestServerBuilder};

/// The server name every test server runs with.
pub const SERVER_NAME: &str = "localhost";
/// The shared secret for `/_synapse/admin/v1/register` every test server is given.
pub const SHARED_SECRET: &str = "complement";

/// `@localpart:localhost`.
pub fn user_id(localpart: &str) -> String {
    format!("@{localpart}:{SERVER_NAME}")
}

/// A localpart that is unique within this test process (tests in one process
/// often share nothing, but this keeps names readable in logs).
pub fn unique_localpart(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters).
pub fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() * 3);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
