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
