//! POST /rooms/{roomId}/upgrade: a new room of a newer version replaces the old one.

use serde_json::{Map, Value, json};

use super::{EventDraft, Origin, Rooms, pdu};
use crate::error::{Error, Result};

/// State copied from the old room to its replacement.
const COPIED_STATE: &[&str] = &[
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
    "m.room.canonical_alias",
];

impl Rooms {
    pub async fn upgrade(&self, room_id: &str, user_id: &str, new_version: &str) -> Result<String> {
        let new_rules = pdu::rules_for(new_version)?;
        self.room_version(room_id).await?;
        self.require_joined(room_id, user_id).await?;
        let levels = self.power_levels(room_id).await?;
        let tombstone_level = levels
            .get("events")
            .and_then(|e| e.get("m.room.tombstone"))
            .and_then(Value::as_i64)
            .or_else(|| levels.get("state_default").and_then(Value::as_i64))
            .unwrap_or(50);
        if self.user_power(room_id, user_id, &levels).await? < tombstone_level {
            return Err(Error::forbidden("You need the power to send m.room.tombstone to upgrade this room"));
        }

        // The new room: the old create content (minus what identifies the old room) plus a predecessor link.
        let old_create = self.state_content(room_id, "m.room.create", "").await?.unwrap_or_else(|| json!({}));
        let mut create = Map::new();
        if let Some(kind) = old_create.get("type") {
            create.insert("type".into(), kind.clone());
        }
        if let Some(federate) = old_create.get("m.federate") {
            create.insert("m.federate".into(), federate.clone());
        }
        let (old_state_map, _) = self.timeline.current_state(room_id).await?;
        let tombstone_placeholder = old_state_map.get(&("m.room.create".to_owned(), String::new())).cloned();
        let mut predecessor = json!({ "room_id": room_id });
        if !new_rules.authorization.room_create_event_id_as_room_id
            && let Some(create_id) = tombstone_placeholder
        {
            predecessor["event_id"] = json!(create_id);
        }
        create.insert("predecessor".into(), predecessor);
        create.insert("room_version".into(), json!(new_version));
        if !new_rules.authorization.use_room_create_sender {
            create.insert("creator".into(), json!(user_id));
        }
        let new_room = self.timeline.create_room(new_version, user_id, Value::Object(create)).await?.room_id;
        let origin = Origin { sender: user_id, txn: None };
        self.set_membership(&new_room, user_id, user_id, "join", None, json!({})).await?;

        // Power levels carry over; in v12+ rooms the creator is not listed.
        let mut new_levels = if levels.is_object() { levels.clone() } else { json!({}) };
        if new_rules.authorization.explicitly_privilege_room_creators
            && let Some(users) = new_levels.get_mut("users").and_then(Value::as_object_mut)
        {
            users.remove(user_id);
        } else if let Some(users) = new_levels.get_mut("users").and_then(Value::as_object_mut) {
            users.insert(user_id.to_owned(), json!(100));
        }
        self.timeline.append(&new_room, &origin, &EventDraft::state("m.room.power_levels", "", new_levels)).await?;
        for kind in COPIED_STATE {
            if let Some(content) = self.state_content(room_id, kind, "").await? {
                self.timeline.append(&new_room, &origin, &EventDraft::state(kind, "", content)).await?;
            }
        }
        // Bans carry over.
        for member in self.storage.room_members(room_id).await? {
            if member.membership == "ban" {
                self.set_membership(&new_room, user_id, &member.user_id, "ban", None, json!({})).await?;
            }
        }

        // Local aliases move to the new room.
        for alias in self.storage.room_aliases(room_id).await? {
            if let Some((_, creator)) = self.storage.get_alias(&alias).await? {
                self.storage.delete_alias(&alias).await?;
                self.storage.create_alias(&alias, &new_room, &creator).await?;
            }
        }
        if let Some(visibility) = self.storage.get_room(room_id).await?.map(|r| r.is_public) {
            self.storage.set_room_public(&new_room, visibility).await?;
            self.storage.set_room_public(room_id, false).await?;
        }

        // The old room points to the new one, then is locked: nobody below the
        // needed level can speak or invite there any more.
        let tombstone = json!({ "body": "This room has been replaced", "replacement_room": new_room });
        self.timeline.append(room_id, &origin, &EventDraft::state("m.room.tombstone", "", tombstone)).await?;
        if levels.is_object() {
            let users_default = levels.get("users_default").and_then(Value::as_i64).unwrap_or(0);
            let restricted = (users_default + 1).max(50);
            let mut locked = levels.clone();
            locked["events_default"] = json!(restricted);
            locked["invite"] = json!(restricted);
            self.timeline.append(room_id, &origin, &EventDraft::state("m.room.power_levels", "", locked)).await?;
        }
        tracing::info!(old = %room_id, new = %new_room, version = %new_version, "room upgraded");
        Ok(new_room)
    }
}
