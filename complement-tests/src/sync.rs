//! `/sync` helpers for scenario tests: requests, tokens and the parts of a
//! response that tests look at.

use serde_json::Value;

use crate::{Client, enc};

pub const SYNC: &str = "/_matrix/client/v3/sync";

/// `GET /sync?{query}`; asserts 200 and a `next_batch` (failures name the caller's line).
#[track_caller]
pub fn sync<'a>(client: &'a Client, query: &'a str) -> impl std::future::Future<Output = Value> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let (status, body) = client.get(&format!("{SYNC}?{query}")).await;
        assert_eq!(status.as_u16(), 200, "GET /sync?{query} failed at {caller}: {body}");
        assert!(body["next_batch"].as_str().is_some_and(|t| !t.is_empty()), "no next_batch at {caller}: {body}");
        body
    }
}

/// The `next_batch` of a sync response.
pub fn next_batch(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

/// `since=<token>&timeout=<ms>` (token encoded).
pub fn since(token: &str, timeout_ms: u64) -> String {
    format!("since={}&timeout={timeout_ms}", enc(token))
}

/// `rooms.join.<room>`, if present.
pub fn joined<'a>(body: &'a Value, room: &str) -> Option<&'a Value> {
    body["rooms"]["join"].get(room)
}

/// The timeline events of a joined room in a response (none when absent).
pub fn timeline<'a>(body: &'a Value, room: &str) -> Vec<&'a Value> {
    joined(body, room).and_then(|r| r["timeline"]["events"].as_array()).map(|a| a.iter().collect()).unwrap_or_default()
}

/// The event ids of a joined room's timeline.
pub fn timeline_ids(body: &Value, room: &str) -> Vec<String> {
    timeline(body, room).iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect()
}

/// The ephemeral events of `kind` in a joined room.
pub fn ephemeral<'a>(body: &'a Value, room: &str, kind: &str) -> Vec<&'a Value> {
    joined(body, room)
        .and_then(|r| r["ephemeral"]["events"].as_array())
        .map(|a| a.iter().filter(|e| e["type"] == kind).collect())
        .unwrap_or_default()
}
