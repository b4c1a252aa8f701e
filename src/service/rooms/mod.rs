//! Rooms: creation, membership, sending, and reading history with visibility rules.

mod create;
mod directory;
pub mod filter;
pub(crate) mod format;
pub mod group_commit;
mod hierarchy;
pub mod ids;
mod membership;
pub mod pdu;
mod read;
pub mod recent;
mod relations;
mod search;
pub mod state;
pub mod timeline;
mod upgrade;
pub(crate) mod visibility;

use std::sync::Arc;

use serde_json::Value;

pub use create::CreateRoomRequest;
pub use directory::PublicRoomsRequest;
pub use hierarchy::HierarchyRequest;
pub use read::{MessagesRequest, MessagesResponse, Token};
pub use relations::{Page, RelationsRequest};
pub use search::RoomEventsCriteria;
pub use timeline::{EventDraft, Origin};
pub use visibility::VisibilityCheck;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::service::signing_key::SigningKey;
use crate::storage::Storage;

pub struct Rooms {
    config: Arc<Config>,
    pub(crate) storage: Arc<dyn Storage>,
    pub timeline: Arc<timeline::Timeline>,
    pub(crate) state: Arc<state::StateStore>,
    /// Room versions never change: known rooms are answered from memory.
    versions: moka::future::Cache<String, String>,
    /// Each user's ignored users, hidden from what they read.
    pub(crate) ignored: Arc<crate::service::ignored_users::IgnoredUsers>,
}

impl Rooms {
    pub async fn new(
        config: Arc<Config>,
        storage: Arc<dyn Storage>,
        signing_key: Arc<SigningKey>,
        notifier: Arc<crate::service::notifier::Notifier>,
        rulesets: Arc<crate::service::push::Rulesets>,
        unread: Arc<crate::service::push::UnreadCache>,
        ignored: Arc<crate::service::ignored_users::IgnoredUsers>,
    ) -> Result<Self> {
        let state = Arc::new(state::StateStore::new(storage.clone()));
        let push = crate::service::push::Evaluator::new(rulesets, config.server_name.clone());
        let timeline = timeline::Timeline::new(
            storage.clone(),
            state.clone(),
            signing_key,
            config.server_name.clone(),
            notifier,
            push,
            unread,
        )
        .await
        .map(Arc::new)?;
        Ok(Self { config, storage, timeline, state, versions: moka::future::Cache::new(100_000), ignored })
    }

    /// The room's version, or 404 M_NOT_FOUND when this server does not know it.
    pub async fn room_version(&self, room_id: &str) -> Result<String> {
        if let Some(version) = self.versions.get(room_id).await {
            return Ok(version);
        }
        let version =
            self.storage.get_room(room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?.room_version;
        self.versions.insert(room_id.to_owned(), version.clone()).await;
        Ok(version)
    }

    /// The user's current membership in a room ("join", "invite", "leave", "ban", "knock").
    pub async fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<String>> {
        Ok(self.storage.membership(room_id, user_id).await?.map(|m| m.membership))
    }

    /// 403 unless the user is joined to the room.
    pub async fn require_joined(&self, room_id: &str, user_id: &str) -> Result<()> {
        match self.membership(room_id, user_id).await?.as_deref() {
            Some("join") => Ok(()),
            _ => Err(Error::forbidden("You are not joined to this room")),
        }
    }

    /// Sends a message-like or state event as a user.
    pub async fn send(&self, room_id: &str, origin: &Origin<'_>, draft: EventDraft) -> Result<String> {
        // Membership and power are checked by the room's auth rules (403 M_FORBIDDEN).
        self.room_version(room_id).await.map_err(|_| Error::forbidden("Unknown room or not joined"))?;
        self.timeline.append(room_id, origin, &draft).await
    }

    /// Redacts an event; allowed for its sender, or for users with the redact
    /// power level. `content` is the redaction's content (a reason, ...).
    pub async fn redact(&self, room_id: &str, origin: &Origin<'_>, target: &str, content: Value) -> Result<String> {
        let version = self.room_version(room_id).await.map_err(|_| Error::forbidden("Unknown room or not joined"))?;
        self.require_joined(room_id, origin.sender).await?;
        let rules = pdu::rules_for(&version)?;
        let event = self.storage.get_event(target).await?.filter(|e| e.room_id == room_id);
        let event = event.ok_or_else(|| Error::not_found("No such event in this room"))?;
        if event.sender != origin.sender {
            let levels = self.power_levels(room_id).await?;
            let redact_level = levels.get("redact").and_then(Value::as_i64).unwrap_or(50);
            if self.user_power(room_id, origin.sender, &levels).await? < redact_level {
                return Err(Error::forbidden("You may not redact other users' events"));
            }
        }
        let mut content = if content.is_object() { content } else { serde_json::json!({}) };
        if rules.redaction.content_field_redacts {
            content["redacts"] = Value::String(target.to_owned());
        } else if let Some(object) = content.as_object_mut() {
            // Before v11 the target is named at the top level of the PDU only.
            object.remove("redacts");
        }
        let draft =
            EventDraft { kind: "m.room.redaction".into(), state_key: None, content, redacts: Some(target.to_owned()) };
        self.send(room_id, origin, draft).await
    }

    /// The content of a current state event, if set.
    pub async fn state_content(&self, room_id: &str, event_type: &str, state_key: &str) -> Result<Option<Value>> {
        let Some(event_id) = self.storage.current_state_event_id(room_id, event_type, state_key).await? else {
            return Ok(None);
        };
        let Some(event) = self.storage.get_event(&event_id).await? else { return Ok(None) };
        Ok(Some(format::content(&event)?))
    }

    async fn power_levels(&self, room_id: &str) -> Result<Value> {
        Ok(self.state_content(room_id, "m.room.power_levels", "").await?.unwrap_or(Value::Null))
    }

    /// A user's power level: creators of v12+ rooms rank above everyone.
    async fn user_power(&self, room_id: &str, user_id: &str, levels: &Value) -> Result<i64> {
        let version = self.room_version(room_id).await?;
        let rules = pdu::rules_for(&version)?;
        if rules.authorization.explicitly_privilege_room_creators {
            let create = self.state_content(room_id, "m.room.create", "").await?.unwrap_or(Value::Null);
            let room = self.storage.get_room(room_id).await?;
            let is_creator = room.is_some_and(|r| r.creator == user_id)
                || create
                    .get("additional_creators")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|c| c.as_str() == Some(user_id)));
            if is_creator {
                return Ok(i64::MAX);
            }
        }
        if levels.is_null() {
            // Without power levels, the creator has 100 and everyone else 0.
            let room = self.storage.get_room(room_id).await?;
            return Ok(if room.is_some_and(|r| r.creator == user_id) { 100 } else { 0 });
        }
        Ok(levels
            .get("users")
            .and_then(|u| u.get(user_id))
            .and_then(Value::as_i64)
            .or_else(|| levels.get("users_default").and_then(Value::as_i64))
            .unwrap_or(0))
    }

    pub async fn joined_rooms(&self, user_id: &str) -> Result<Vec<String>> {
        Ok(self.storage.rooms_with_membership(user_id, "join").await?)
    }

    pub fn server_name(&self) -> &str {
        &self.config.server_name
    }

    /// The PDU of an event as stored, with its room version (admin/debug use).
    pub async fn raw_pdu(&self, event_id: &str) -> Result<(String, Value)> {
        let event = self.storage.get_event(event_id).await?.ok_or_else(|| Error::not_found("Unknown event"))?;
        let version = self.room_version(&event.room_id).await?;
        Ok((version, serde_json::from_str(&event.json).map_err(Error::internal)?))
    }
}
