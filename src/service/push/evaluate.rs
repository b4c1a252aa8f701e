//! Evaluating an event against the push rules of each local member of its room.
//!
//! Runs in the room's writer, before the event is stored: the notifications go
//! into the event's own transaction, so a /sync that can see an event always
//! sees the counts it changed (see `Timeline::authorize_and_persist`).

use std::collections::HashMap;
use std::sync::Arc;

use ruma::events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource};
use ruma::push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx};
use ruma::room_version_rules::AuthorizationRules;
use ruma::serde::Raw;
use ruma::{OwnedRoomId, OwnedUserId, UInt};
use serde_json::Value;

use super::rulesets::Rulesets;
use crate::error::{Error, Result};
use crate::storage::{PushActionRow, Storage};

/// The thread id of events outside any thread.
pub const MAIN_THREAD: &str = "main";

/// What the push conditions need to know about a room, kept by the room's
/// writer and updated as membership and power levels change, so that an event
/// costs no member-list read.
pub struct RoomPushContext {
    /// Joined members and their display names in the room.
    members: HashMap<OwnedUserId, String>,
    creators: Vec<OwnedUserId>,
    power_levels: Option<RoomPowerLevelsEventContent>,
    /// Reused for every member (only the user fields change).
    ctx: PushConditionRoomCtx,
}

impl RoomPushContext {
    /// The context of a room without events yet.
    pub fn new_room(room_id: &str) -> Result<Self> {
        let room = OwnedRoomId::try_from(room_id).map_err(Error::internal)?;
        let placeholder = OwnedUserId::try_from("@placeholder:example.org").map_err(Error::internal)?;
        Ok(Self {
            members: HashMap::new(),
            creators: Vec::new(),
            power_levels: None,
            ctx: PushConditionRoomCtx::new(room, UInt::MIN, placeholder, String::new()),
        })
    }

    /// Loads the context of a room from its current state as stored.
    pub async fn load(storage: &dyn Storage, room_id: &str, rules: &AuthorizationRules) -> Result<Self> {
        let mut this = Self::new_room(room_id)?;
        for (user_id, json) in storage.joined_member_events(room_id).await? {
            let Ok(user_id) = OwnedUserId::try_from(user_id) else { continue };
            let pdu: Value = serde_json::from_str(&json).map_err(Error::internal)?;
            this.members.insert(user_id, display_name(pdu.get("content")));
        }
        for kind in ["m.room.create", "m.room.power_levels"] {
            let Some(id) = storage.current_state_event_id(room_id, kind, "").await? else { continue };
            let Some(event) = storage.get_event(&id).await? else { continue };
            let pdu: Value = serde_json::from_str(&event.json).map_err(Error::internal)?;
            let content = pdu.get("content").cloned().unwrap_or(Value::Null);
            this.apply_state(kind, "", &event.sender, &content, rules);
        }
        this.refresh_power_levels(rules);
        Ok(this)
    }

    /// Takes in a state event just stored in the room.
    pub fn apply(&mut self, kind: &str, state_key: &str, sender: &str, content: &Value, rules: &AuthorizationRules) {
        if self.apply_state(kind, state_key, sender, content, rules) {
            self.refresh_power_levels(rules);
        }
    }

    /// Returns whether the power levels context must be rebuilt.
    fn apply_state(
        &mut self,
        kind: &str,
        state_key: &str,
        sender: &str,
        content: &Value,
        rules: &AuthorizationRules,
    ) -> bool {
        match kind {
            "m.room.member" => {
                let Ok(user_id) = OwnedUserId::try_from(state_key) else { return false };
                if content.get("membership").and_then(Value::as_str) == Some("join") {
                    self.members.insert(user_id, display_name(Some(content)));
                } else {
                    self.members.remove(&user_id);
                }
                false
            }
            "m.room.create" if state_key.is_empty() => {
                self.creators = OwnedUserId::try_from(sender).into_iter().collect();
                if rules.explicitly_privilege_room_creators
                    && let Some(extra) = content.get("additional_creators").and_then(Value::as_array)
                {
                    self.creators.extend(extra.iter().filter_map(|u| u.as_str()?.try_into().ok()));
                }
                true
            }
            "m.room.power_levels" if state_key.is_empty() => {
                self.power_levels = serde_json::from_value(content.clone()).ok();
                true
            }
            _ => false,
        }
    }

    fn refresh_power_levels(&mut self, rules: &AuthorizationRules) {
        let source = match self.power_levels.clone() {
            Some(content) => RoomPowerLevelsSource::Original(content),
            None => RoomPowerLevelsSource::None,
        };
        let levels = RoomPowerLevels::new(source, rules, self.creators.clone());
        self.ctx.power_levels = Some(PushConditionPowerLevelsCtx::from(levels));
    }
}

/// A member's display name in the room ("" without one).
fn display_name(content: Option<&Value>) -> String {
    content.and_then(|c| c.get("displayname")).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The thread an event belongs to for notification counts: the thread root's
/// id for a reply in a thread, else the main timeline.
pub fn thread_of(content: &Value) -> &str {
    let relates_to = content.get("m.relates_to");
    match relates_to.and_then(|r| r.get("rel_type")).and_then(Value::as_str) {
        Some("m.thread") => relates_to.and_then(|r| r.get("event_id")).and_then(Value::as_str).unwrap_or(MAIN_THREAD),
        _ => MAIN_THREAD,
    }
}

pub struct Evaluator {
    rulesets: Arc<Rulesets>,
    server_name: String,
}

impl Evaluator {
    pub fn new(rulesets: Arc<Rulesets>, server_name: String) -> Self {
        Self { rulesets, server_name }
    }

    /// The notifications an event gives the room's local joined members other
    /// than its sender: one row per member whose first matching rule notifies.
    pub async fn evaluate(
        &self,
        room: &mut RoomPushContext,
        sender: &str,
        event_json: &str,
        content: &Value,
    ) -> Result<Vec<PushActionRow>> {
        let RoomPushContext { members, ctx, .. } = room;
        let local = |user: &OwnedUserId| user.server_name().as_str() == self.server_name && user.as_str() != sender;
        if !members.keys().any(local) {
            return Ok(Vec::new());
        }
        let raw: Raw<Value> =
            Raw::from_json(serde_json::value::RawValue::from_string(event_json.to_owned()).map_err(Error::internal)?);
        let event = FlattenedJson::from_raw(&raw);
        let thread = thread_of(content);
        ctx.member_count = UInt::try_from(members.len()).unwrap_or(UInt::MAX);
        let mut rows = Vec::new();
        for (user_id, name) in members.iter().filter(|(u, _)| local(u)) {
            let ruleset = self.rulesets.get(user_id).await?;
            ctx.user_id.clone_from(user_id);
            // Without a display name, the user id (what clients show instead)
            // rather than "", which would match an empty body.
            ctx.user_display_name.clear();
            ctx.user_display_name.push_str(if name.is_empty() { user_id.as_str() } else { name });
            let mut actions: &[Action] = &[];
            for rule in ruleset.iter() {
                if rule.applies(&event, ctx).await {
                    actions = rule.actions();
                    break;
                }
            }
            if !actions.iter().any(Action::should_notify) {
                continue;
            }
            rows.push(PushActionRow {
                user_id: user_id.to_string(),
                thread_id: thread.to_owned(),
                highlight: actions.iter().any(Action::is_highlight),
                actions: serde_json::to_string(actions).map_err(Error::internal)?,
            });
        }
        Ok(rows)
    }
}
