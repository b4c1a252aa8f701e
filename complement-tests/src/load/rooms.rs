//! Room requests shared by the room scenarios.

use reqwest::Method;
use serde_json::{Value, json};

use super::Ctx;

/// Percent-encodes one path segment or query value (everything but RFC 3986
/// unreserved characters), e.g. a room id `!abc:example.org`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// POST /createRoom with `body`; returns the new room id.
pub async fn create_room(ctx: &Ctx, token: &str, body: &Value) -> Result<String, String> {
    let (status, resp) = ctx.send(Method::POST, "/_matrix/client/v3/createRoom", Some(token), Some(body)).await?;
    match (status, resp["room_id"].as_str()) {
        (200, Some(room_id)) => Ok(room_id.to_owned()),
        _ => Err(format!("createRoom: {status} {resp}")),
    }
}

/// Creates a room with `preset` (`public_chat`, `private_chat`, ...).
pub async fn create_preset(ctx: &Ctx, token: &str, preset: &str, name: &str) -> Result<String, String> {
    create_room(ctx, token, &json!({ "preset": preset, "name": name })).await
}

/// POST /join/{roomId} with an empty body.
pub async fn join(ctx: &Ctx, token: &str, room_id: &str) -> Result<(), String> {
    let path = format!("/_matrix/client/v3/join/{}", encode(room_id));
    let (status, resp) = ctx.send(Method::POST, &path, Some(token), Some(&json!({}))).await?;
    if status != 200 || resp["room_id"] != room_id {
        return Err(format!("join {room_id}: {status} {resp}"));
    }
    Ok(())
}

/// PUT /rooms/{roomId}/send/m.room.message/{txnId} with an m.text body.
pub async fn send_text(ctx: &Ctx, token: &str, room_id: &str, txn_id: &str, text: &str) -> Result<String, String> {
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", encode(room_id), encode(txn_id));
    let body = json!({ "msgtype": "m.text", "body": text });
    let (status, resp) = ctx.send(Method::PUT, &path, Some(token), Some(&body)).await?;
    match (status, resp["event_id"].as_str()) {
        (200, Some(event_id)) => Ok(event_id.to_owned()),
        _ => Err(format!("send {room_id} txn {txn_id}: {status} {resp}")),
    }
}

/// A message body of a realistic size (~60-80 bytes).
pub fn message_text(worker: usize, seq: u64) -> String {
    format!("load test message {seq} from worker {worker}: the quick brown fox jumps over the lazy dog")
}

/// GET /rooms/{roomId}/messages?dir=b&limit=`limit`[&from=`from`]; returns the body.
pub async fn messages_back(
    ctx: &Ctx,
    token: &str,
    room_id: &str,
    limit: usize,
    from: Option<&str>,
) -> Result<Value, String> {
    let mut path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}", encode(room_id));
    if let Some(from) = from {
        path.push_str("&from=");
        path.push_str(&encode(from));
    }
    let (status, resp) = ctx.send(Method::GET, &path, Some(token), None).await?;
    if status != 200 || !resp["chunk"].is_array() {
        return Err(format!("messages {room_id} from {from:?}: {status} {resp}"));
    }
    Ok(resp)
}
