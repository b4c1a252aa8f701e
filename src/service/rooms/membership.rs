//! Membership changes: join, invite, leave, kick, ban, unban, knock, forget.

use serde_json::{Value, json};

use super::{EventDraft, Origin, Rooms};
use crate::error::{Error, Result};

impl Rooms {
    /// Resolves a room id or a local alias to a room id this server knows.
    pub async fn resolve_room(&self, room_id_or_alias: &str) -> Result<String> {
        if room_id_or_alias.starts_with('#') {
            let alias = self.storage.get_alias(room_id_or_alias).await?;
            return alias.map(|(room_id, _)| room_id).ok_or_else(|| Error::not_found("Room alias not found"));
        }
        if ruma::RoomId::parse(room_id_or_alias).is_err() {
            return Err(Error::invalid_param("Not a room id or alias"));
        }
        self.room_version(room_id_or_alias).await.map_err(|_| {
            Error::not_found("This server does not know the room (joining over federation is not supported yet)")
        })?;
        Ok(room_id_or_alias.to_owned())
    }

    /// Sets `target`'s membership, as `sender`. The room's auth rules decide
    /// whether it is allowed (403 M_FORBIDDEN when not).
    pub async fn set_membership(
        &self,
        room_id: &str,
        sender: &str,
        target: &str,
        membership: &str,
        reason: Option<&str>,
        extra: Value,
    ) -> Result<String> {
        self.room_version(room_id).await?;
        let target_id = ruma::UserId::parse(target).map_err(|_| Error::invalid_param("Invalid user id"))?;
        if target_id.server_name().as_str() != self.config.server_name {
            return Err(Error::forbidden("Users of other servers cannot be invited yet (no federation)"));
        }
        let mut content = json!({ "membership": membership });
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        if let Value::Object(extra) = extra {
            for (key, value) in extra {
                content[key] = value;
            }
        }
        // Joins and invites carry the target's profile, as clients expect, where
        // the client did not set the field itself (a per-room display name).
        if matches!(membership, "join" | "invite" | "knock")
            && let Some(user) = self.storage.get_user(target).await?
        {
            if let Some(name) = user.displayname
                && content.get("displayname").is_none()
            {
                content["displayname"] = json!(name);
            }
            if let Some(url) = user.avatar_url
                && content.get("avatar_url").is_none()
            {
                content["avatar_url"] = json!(url);
            }
        }
        if membership == "join" {
            if self.storage.get_user(target).await?.is_some_and(|u| u.is_guest) {
                let access = self.state_content(room_id, "m.room.guest_access", "").await?;
                if access.and_then(|c| c.get("guest_access").and_then(Value::as_str).map(str::to_owned)).as_deref()
                    != Some("can_join")
                {
                    return Err(Error::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "M_FORBIDDEN",
                        "Guests cannot join this room",
                    ));
                }
            }
            self.authorise_restricted_join(room_id, target, &mut content).await?;
        }
        let draft = EventDraft::state("m.room.member", target, content);
        self.timeline.append(room_id, &Origin { sender, txn: None }, &draft).await
    }

    /// For a restricted room that the user may join through membership of an
    /// allowed room, names a local member who can invite as the authoriser.
    async fn authorise_restricted_join(&self, room_id: &str, user_id: &str, content: &mut Value) -> Result<()> {
        let rules = self.state_content(room_id, "m.room.join_rules", "").await?.unwrap_or(Value::Null);
        let join_rule = rules.get("join_rule").and_then(Value::as_str).unwrap_or("invite");
        if !matches!(join_rule, "restricted" | "knock_restricted") {
            return Ok(());
        }
        if matches!(self.membership(room_id, user_id).await?.as_deref(), Some("join" | "invite")) {
            return Ok(());
        }
        let allowed_rooms: Vec<&str> = rules
            .get("allow")
            .and_then(Value::as_array)
            .map(|allow| {
                allow
                    .iter()
                    .filter(|a| a.get("type").and_then(Value::as_str) == Some("m.room_membership"))
                    .filter_map(|a| a.get("room_id").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let mut eligible = false;
        for allowed in allowed_rooms {
            if self.membership(allowed, user_id).await?.as_deref() == Some("join") {
                eligible = true;
                break;
            }
        }
        if !eligible {
            return Ok(()); // The auth rules will refuse the join.
        }
        let levels = self.power_levels(room_id).await?;
        let invite_level = levels.get("invite").and_then(Value::as_i64).unwrap_or(0);
        for member in self.storage.room_members(room_id).await? {
            if member.membership == "join"
                && member.user_id.ends_with(&format!(":{}", self.config.server_name))
                && self.user_power(room_id, &member.user_id, &levels).await? >= invite_level
            {
                content["join_authorised_via_users_server"] = json!(member.user_id);
                return Ok(());
            }
        }
        Ok(())
    }

    /// POST /rooms/{roomId}/forget: only once the user has left or was banned.
    pub async fn forget(&self, room_id: &str, user_id: &str) -> Result<()> {
        match self.membership(room_id, user_id).await?.as_deref() {
            Some("join" | "invite" | "knock") => Err(Error::new(
                axum::http::StatusCode::BAD_REQUEST,
                "M_UNKNOWN",
                "You must leave the room before forgetting it",
            )),
            Some(_) => {
                self.storage.forget_room(room_id, user_id).await?;
                self.timeline.user_rooms.changed(&user_id.to_owned());
                Ok(())
            }
            None => Err(Error::not_found("You were never in this room")),
        }
    }
}
