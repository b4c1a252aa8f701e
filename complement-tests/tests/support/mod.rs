//! Shared helpers for the `features_*` scenario tests: rooms, messages,
//! membership and small JSON accessors. Each test binary uses a subset.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use complement_tests::{Client, Resp, assert_ok, enc};
use serde_json::{Value, json};

/// A transaction id unique within the test process.
pub fn txn() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("txn{}-{}", complement_tests::now_ms(), N.fetch_add(1, Ordering::Relaxed))
}

/// `POST /createRoom` with `body`; panics unless 200. Returns the room id.
pub async fn create_room(client: &Client, body: Value) -> String {
    let resp = client.post("/_matrix/client/v3/createRoom", body).await;
    let body = assert_ok(resp);
    body["room_id"].as_str().unwrap_or_else(|| panic!("no room_id in {body}")).to_owned()
}

/// A public room (`preset: public_chat`).
pub async fn create_public_room(client: &Client) -> String {
    create_room(client, json!({ "preset": "public_chat" })).await
}

/// A private room (`preset: private_chat`).
pub async fn create_private_room(client: &Client) -> String {
    create_room(client, json!({ "preset": "private_chat" })).await
}

/// `PUT /rooms/{room}/send/{type}/{txn}`; the raw response.
pub async fn send_event_raw(client: &Client, room: &str, event_type: &str, content: Value) -> Resp {
    let path = format!("/_matrix/client/v3/rooms/{}/send/{}/{}", enc(room), enc(event_type), txn());
    client.put(&path, content).await
}

/// Sends an event; panics unless 200. Returns the event id.
pub async fn send_event(client: &Client, room: &str, event_type: &str, content: Value) -> String {
    let body = assert_ok(send_event_raw(client, room, event_type, content).await);
    body["event_id"].as_str().unwrap_or_else(|| panic!("no event_id in {body}")).to_owned()
}

/// Sends an `m.text` message; returns its event id.
pub async fn send_text(client: &Client, room: &str, text: &str) -> String {
    send_event(client, room, "m.room.message", json!({ "msgtype": "m.text", "body": text })).await
}

/// `/rooms/{room}/state/{type}/{state_key}`, without the (optional) trailing
/// slash when the state key is empty.
pub fn state_path(room: &str, event_type: &str, state_key: &str) -> String {
    let base = format!("/_matrix/client/v3/rooms/{}/state/{}", enc(room), enc(event_type));
    if state_key.is_empty() { base } else { format!("{base}/{}", enc(state_key)) }
}

/// `PUT /rooms/{room}/state/{type}/{state_key}`; the raw response.
pub async fn put_state_raw(client: &Client, room: &str, event_type: &str, state_key: &str, content: Value) -> Resp {
    client.put(&state_path(room, event_type, state_key), content).await
}

/// Sends a state event; panics unless 200. Returns the event id.
pub async fn put_state(client: &Client, room: &str, event_type: &str, state_key: &str, content: Value) -> String {
    let body = assert_ok(put_state_raw(client, room, event_type, state_key, content).await);
    body["event_id"].as_str().unwrap_or_else(|| panic!("no event_id in {body}")).to_owned()
}

/// `GET /rooms/{room}/state/{type}/{state_key}`; the raw response.
pub async fn get_state_raw(client: &Client, room: &str, event_type: &str, state_key: &str) -> Resp {
    client.get(&state_path(room, event_type, state_key)).await
}

/// The content of a state event; panics unless 200.
pub async fn get_state(client: &Client, room: &str, event_type: &str, state_key: &str) -> Value {
    assert_ok(get_state_raw(client, room, event_type, state_key).await)
}

/// `POST /rooms/{room}/join`; the raw response.
pub async fn join_raw(client: &Client, room: &str) -> Resp {
    client.post(&format!("/_matrix/client/v3/rooms/{}/join", enc(room)), json!({})).await
}

/// Joins a room; panics unless 200.
pub async fn join(client: &Client, room: &str) {
    let body = assert_ok(join_raw(client, room).await);
    assert_eq!(body["room_id"], json!(room), "join response: {body}");
}

/// Invites `user_id`; panics unless 200.
pub async fn invite(client: &Client, room: &str, user_id: &str) {
    let path = format!("/_matrix/client/v3/rooms/{}/invite", enc(room));
    assert_ok(client.post(&path, json!({ "user_id": user_id })).await);
}

/// Leaves a room; panics unless 200.
pub async fn leave(client: &Client, room: &str) {
    assert_ok(client.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(room)), json!({})).await);
}

/// `GET /rooms/{room}/event/{event}`; the raw response.
pub async fn get_event_raw(client: &Client, room: &str, event_id: &str) -> Resp {
    client.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(event_id))).await
}

/// `GET /rooms/{room}/messages?dir=..&limit=..` plus `extra` query (e.g. "&from=x").
pub async fn messages_raw(client: &Client, room: &str, dir: &str, limit: u32, extra: &str) -> Resp {
    let path = format!("/_matrix/client/v3/rooms/{}/messages?dir={dir}&limit={limit}{extra}", enc(room));
    client.get(&path).await
}

/// The `chunk` of `GET /messages` (backwards, up to 100 events); panics unless 200.
pub async fn messages(client: &Client, room: &str) -> Vec<Value> {
    let body = assert_ok(messages_raw(client, room, "b", 100, "").await);
    chunk(&body)
}

/// The `chunk` array of a response body.
pub fn chunk(body: &Value) -> Vec<Value> {
    body["chunk"].as_array().unwrap_or_else(|| panic!("no chunk array in {body}")).clone()
}

/// The `event_id`s of a list of events, in order.
pub fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["event_id"].as_str().unwrap_or_else(|| panic!("no event_id in {e}")).to_owned()).collect()
}

/// The `event_id`s of `body["chunk"]`.
pub fn chunk_ids(body: &Value) -> Vec<String> {
    ids(&chunk(body))
}

/// The event with `event_id` in `events`, if any.
pub fn find_event<'a>(events: &'a [Value], event_id: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["event_id"] == json!(event_id))
}

/// The `body`s of the `m.room.message` events in `events`, in order.
pub fn message_bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == json!("m.room.message"))
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// `%23local:localhost`, an alias as a path segment.
pub fn alias_path(alias: &str) -> String {
    format!("/_matrix/client/v3/directory/room/{}", enc(alias))
}

/// Sleeps `ms` milliseconds (to separate `origin_server_ts` values).
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}
