//! The public room directory (GET/POST /publicRooms).

use serde_json::{Value, json};

use super::Rooms;
use crate::error::{Error, Result};

pub struct PublicRoomsRequest<'a> {
    pub limit: Option<usize>,
    pub since: Option<&'a str>,
    pub search: Option<&'a str>,
}

impl Rooms {
    /// A directory entry built from the room's current state.
    pub(super) async fn public_room_chunk(&self, room_id: &str) -> Result<Value> {
        let text =
            |value: Option<Value>, key: &str| value.and_then(|c| c.get(key).and_then(Value::as_str).map(str::to_owned));
        let name = text(self.state_content(room_id, "m.room.name", "").await?, "name");
        let topic = text(self.state_content(room_id, "m.room.topic", "").await?, "topic");
        let alias = text(self.state_content(room_id, "m.room.canonical_alias", "").await?, "alias");
        let avatar = text(self.state_content(room_id, "m.room.avatar", "").await?, "url");
        let join_rule = text(self.state_content(room_id, "m.room.join_rules", "").await?, "join_rule");
        let visibility =
            text(self.state_content(room_id, "m.room.history_visibility", "").await?, "history_visibility");
        let guest = text(self.state_content(room_id, "m.room.guest_access", "").await?, "guest_access");
        let room_type = text(self.state_content(room_id, "m.room.create", "").await?, "type");
        let joined = self.storage.room_members(room_id).await?.iter().filter(|m| m.membership == "join").count();
        let mut chunk = json!({
            "room_id": room_id,
            "num_joined_members": joined,
            "world_readable": visibility.as_deref() == Some("world_readable"),
            "guest_can_join": guest.as_deref() == Some("can_join"),
            "join_rule": join_rule.unwrap_or_else(|| "invite".to_owned()),
        });
        for (key, value) in [
            ("name", name),
            ("topic", topic),
            ("canonical_alias", alias),
            ("avatar_url", avatar),
            ("room_type", room_type),
        ] {
            if let Some(value) = value {
                chunk[key] = json!(value);
            }
        }
        Ok(chunk)
    }

    pub async fn public_rooms(&self, request: PublicRoomsRequest<'_>) -> Result<Value> {
        let offset = match request.since {
            Some(token) => token
                .strip_prefix('o')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| Error::invalid_param("Invalid since token"))?,
            None => 0,
        };
        let mut chunks = Vec::new();
        for room_id in self.storage.public_rooms().await? {
            chunks.push(self.public_room_chunk(&room_id).await?);
        }
        if let Some(term) = request.search.map(str::to_lowercase).filter(|t| !t.is_empty()) {
            chunks.retain(|c| {
                ["name", "topic", "canonical_alias"]
                    .iter()
                    .any(|k| c.get(*k).and_then(Value::as_str).is_some_and(|v| v.to_lowercase().contains(&term)))
            });
        }
        chunks.sort_by(|a, b| {
            b["num_joined_members"]
                .as_u64()
                .cmp(&a["num_joined_members"].as_u64())
                .then_with(|| a["room_id"].as_str().cmp(&b["room_id"].as_str()))
        });
        let total = chunks.len();
        let limit = request.limit.unwrap_or(total.max(1)).max(1);
        let page: Vec<Value> = chunks.into_iter().skip(offset).take(limit).collect();
        let mut body = json!({ "chunk": page, "total_room_count_estimate": total });
        if offset + limit < total {
            body["next_batch"] = json!(format!("o{}", offset + limit));
        }
        if offset > 0 {
            body["prev_batch"] = json!(format!("o{}", offset.saturating_sub(limit)));
        }
        Ok(body)
    }
}
