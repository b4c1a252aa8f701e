//! History visibility: who may see which event (spec: "History visibility").

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::Rooms;
use crate::error::Result;
use crate::storage::StoredEvent;

/// Answers visibility questions for one user, remembering per state snapshot.
pub struct VisibilityCheck<'a> {
    rooms: &'a Rooms,
    user_id: &'a str,
    /// The user's current membership in the room.
    current: Option<String>,
    by_group: HashMap<i64, bool>,
    /// Users in the viewer's `m.ignored_user_list`: their messages are hidden.
    ignored: Arc<HashSet<String>>,
}

impl<'a> VisibilityCheck<'a> {
    pub async fn new(rooms: &'a Rooms, room_id: &str, user_id: &'a str) -> Result<Self> {
        let ignored = rooms.ignored.of(user_id).await?;
        Self::with_ignored(rooms, room_id, user_id, ignored).await
    }

    /// For a request over many rooms: the viewer's ignored users read once.
    pub async fn with_ignored(
        rooms: &'a Rooms,
        room_id: &str,
        user_id: &'a str,
        ignored: Arc<HashSet<String>>,
    ) -> Result<Self> {
        let current = rooms.membership(room_id, user_id).await?;
        Ok(Self { rooms, user_id, current, by_group: HashMap::new(), ignored })
    }

    /// For a request over many rooms that knows the viewer's current membership.
    pub fn with_membership(
        rooms: &'a Rooms,
        user_id: &'a str,
        current: Option<String>,
        ignored: Arc<HashSet<String>>,
    ) -> Self {
        Self { rooms, user_id, current, by_group: HashMap::new(), ignored }
    }

    pub fn current_membership(&self) -> Option<&str> {
        self.current.as_deref()
    }

    pub async fn can_see(&mut self, event: &StoredEvent) -> Result<bool> {
        if event.state_key.is_none() && self.ignored.contains(&event.sender) {
            return Ok(false);
        }
        // Users always see their own membership changes (a kick, a ban), or a
        // removed user would never learn why the room went away.
        if event.event_type == "m.room.member" && event.state_key.as_deref() == Some(self.user_id) {
            return Ok(true);
        }
        if let Some(&visible) = self.by_group.get(&event.state_group) {
            return Ok(visible);
        }
        let visible = self.decide(event.state_group).await?;
        self.by_group.insert(event.state_group, visible);
        Ok(visible)
    }

    async fn decide(&self, group: i64) -> Result<bool> {
        let visibility = self
            .state_field(group, "m.room.history_visibility", "", "history_visibility")
            .await?
            .unwrap_or_else(|| "shared".to_owned());
        if visibility == "world_readable" {
            return Ok(true);
        }
        let membership = self.state_field(group, "m.room.member", self.user_id, "membership").await?;
        Ok(match membership.as_deref() {
            Some("join") => true,
            Some("invite") if visibility == "invited" => true,
            _ => visibility == "shared" && self.current.as_deref() == Some("join"),
        })
    }

    async fn state_field(&self, group: i64, event_type: &str, state_key: &str, field: &str) -> Result<Option<String>> {
        let Some(event_id) = self.rooms.state.lookup(group, event_type, state_key).await? else { return Ok(None) };
        let Some(content) = self.rooms.timeline.content(&event_id).await? else { return Ok(None) };
        Ok(content.get(field).and_then(Value::as_str).map(str::to_owned))
    }
}
