//! GET /rooms/{roomId}/hierarchy: the rooms of a space, breadth-first.

use std::collections::{HashSet, VecDeque};

use serde_json::{Value, json};

use super::Rooms;
use crate::error::{Error, Result};

pub struct HierarchyRequest<'a> {
    pub from: Option<&'a str>,
    pub limit: usize,
    pub max_depth: usize,
    pub suggested_only: bool,
}

impl Rooms {
    /// Whether a user may preview a room: joined or invited, or a room anyone may join or read.
    async fn can_preview(&self, room_id: &str, user_id: &str) -> Result<bool> {
        if self.storage.get_room(room_id).await?.is_none() {
            return Ok(false);
        }
        if matches!(self.membership(room_id, user_id).await?.as_deref(), Some("join" | "invite")) {
            return Ok(true);
        }
        let join_rule = self
            .state_content(room_id, "m.room.join_rules", "")
            .await?
            .and_then(|c| c.get("join_rule").and_then(Value::as_str).map(str::to_owned));
        let visibility = self
            .state_content(room_id, "m.room.history_visibility", "")
            .await?
            .and_then(|c| c.get("history_visibility").and_then(Value::as_str).map(str::to_owned));
        Ok(matches!(join_rule.as_deref(), Some("public" | "knock" | "knock_restricted"))
            || visibility.as_deref() == Some("world_readable"))
    }

    /// The space's `m.space.child` events (with a `via`), in stripped form.
    async fn space_children(&self, room_id: &str, suggested_only: bool) -> Result<Vec<Value>> {
        let mut children = Vec::new();
        for entry in self.storage.current_state(room_id).await? {
            if entry.event_type != "m.space.child" {
                continue;
            }
            let Some(event) = self.storage.get_event(&entry.event_id).await? else { continue };
            let content = super::format::content(&event)?;
            let has_via = content.get("via").and_then(Value::as_array).is_some_and(|v| !v.is_empty());
            let suggested = content.get("suggested").and_then(Value::as_bool).unwrap_or(false);
            if has_via && (!suggested_only || suggested) {
                children.push(json!({
                    "type": "m.space.child",
                    "state_key": entry.state_key,
                    "content": content,
                    "sender": event.sender,
                    "origin_server_ts": event.origin_server_ts,
                }));
            }
        }
        children.sort_by(|a, b| a["state_key"].as_str().cmp(&b["state_key"].as_str()));
        Ok(children)
    }

    pub async fn hierarchy(&self, room_id: &str, user_id: &str, request: HierarchyRequest<'_>) -> Result<Value> {
        if !self.can_preview(room_id, user_id).await? {
            return Err(Error::forbidden("You cannot view this space"));
        }
        let skip = match request.from {
            Some(token) => token
                .strip_prefix('h')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| Error::invalid_param("Invalid from token"))?,
            None => 0,
        };
        let limit = request.limit.clamp(1, 100);
        let mut rooms = Vec::new();
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([(room_id.to_owned(), 0usize)]);
        let mut index = 0;
        while let Some((current, depth)) = queue.pop_front() {
            if !seen.insert(current.clone()) || !self.can_preview(&current, user_id).await? {
                continue;
            }
            let children = self.space_children(&current, request.suggested_only).await?;
            if depth < request.max_depth {
                for child in &children {
                    if let Some(child_id) = child["state_key"].as_str() {
                        queue.push_back((child_id.to_owned(), depth + 1));
                    }
                }
            }
            if index >= skip {
                let mut chunk = self.public_room_chunk(&current).await?;
                chunk["children_state"] = json!(children);
                rooms.push(chunk);
            }
            index += 1;
            if rooms.len() == limit {
                break;
            }
        }
        let mut body = json!({ "rooms": rooms });
        if !queue.is_empty() && body["rooms"].as_array().is_some_and(|r| r.len() == limit) {
            body["next_batch"] = json!(format!("h{}", skip + limit));
        }
        Ok(body)
    }
}
