//! `/sync` requests shared by the sync scenarios.

use reqwest::Method;
use serde_json::{Value, json};

use super::Ctx;
use super::rooms::encode;

/// A filter that keeps long-poll responses small: the last few timeline
/// events, lazily loaded members, no presence.
pub fn small_filter(timeline_limit: usize) -> String {
    json!({
        "room": {
            "timeline": { "limit": timeline_limit },
            "state": { "lazy_load_members": true },
        },
        "presence": { "types": [] },
    })
    .to_string()
}

/// GET /sync with an optional `since`, `timeout` in ms and an optional inline
/// filter; returns the body, or an error for a non-200 answer.
pub async fn sync(
    ctx: &Ctx,
    token: &str,
    since: Option<&str>,
    timeout_ms: u64,
    filter: Option<&str>,
) -> Result<Value, String> {
    let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
    if let Some(since) = since {
        path.push_str("&since=");
        path.push_str(&encode(since));
    }
    if let Some(filter) = filter {
        path.push_str("&filter=");
        path.push_str(&encode(filter));
    }
    let (status, resp) = ctx.send(Method::GET, &path, Some(token), None).await?;
    if status != 200 || !resp["next_batch"].is_string() {
        return Err(format!("sync since {since:?}: {status} {resp}"));
    }
    Ok(resp)
}

/// The `next_batch` of a sync response.
pub fn next_batch(resp: &Value) -> Result<String, String> {
    resp["next_batch"].as_str().map(str::to_owned).ok_or_else(|| format!("sync response without next_batch: {resp}"))
}

/// The timeline events of `room_id` in a sync response.
pub fn timeline<'a>(resp: &'a Value, room_id: &str) -> &'a [Value] {
    resp["rooms"]["join"][room_id]["timeline"]["events"].as_array().map_or(&[], Vec::as_slice)
}

/// What a long-polling receiver reads of a sync response: the token and the
/// bodies of one room's timeline events. Decoded straight into these types
/// (everything else skipped unparsed), so that a hundred receivers on the
/// server's machine spend as little of its CPU as they can.
#[derive(serde::Deserialize)]
struct LeanSync {
    next_batch: String,
    #[serde(default)]
    rooms: LeanRooms,
}

#[derive(serde::Deserialize, Default)]
struct LeanRooms {
    #[serde(default)]
    join: std::collections::HashMap<String, LeanRoom>,
}

#[derive(serde::Deserialize)]
struct LeanRoom {
    #[serde(default)]
    timeline: LeanTimeline,
}

#[derive(serde::Deserialize, Default)]
struct LeanTimeline {
    #[serde(default)]
    events: Vec<LeanEvent>,
}

#[derive(serde::Deserialize)]
struct LeanEvent {
    #[serde(default)]
    content: LeanContent,
}

#[derive(serde::Deserialize, Default)]
struct LeanContent {
    body: Option<String>,
}

/// GET /sync like [`sync`], returning only `next_batch` and the `body` of each
/// timeline event of `room_id` (None for events without one).
pub async fn sync_bodies(
    ctx: &Ctx,
    token: &str,
    since: &str,
    timeout_ms: u64,
    filter: &str,
    room_id: &str,
) -> Result<(String, Vec<Option<String>>), String> {
    let path =
        format!("/_matrix/client/v3/sync?timeout={timeout_ms}&since={}&filter={}", encode(since), encode(filter));
    let resp =
        ctx.http.get(ctx.url(&path)).bearer_auth(token).send().await.map_err(|e| format!("sync since {since}: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| format!("sync since {since}: {e}"))?;
    if status != 200 {
        return Err(format!("sync since {since}: {status} {}", String::from_utf8_lossy(&bytes)));
    }
    let mut parsed: LeanSync =
        serde_json::from_slice(&bytes).map_err(|e| format!("sync since {since}: bad response: {e}"))?;
    let bodies = match parsed.rooms.join.remove(room_id) {
        Some(room) => room.timeline.events.into_iter().map(|e| e.content.body).collect(),
        None => Vec::new(),
    };
    Ok((parsed.next_batch, bodies))
}
