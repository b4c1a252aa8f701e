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
        self.rulesets.preload(members.keys().filter(|u| local(u))).await?;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules() -> AuthorizationRules {
        ruma::room_version_rules::RoomVersionRules::V12.authorization
    }

    async fn evaluator() -> (Evaluator, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("push.db").display());
        let storage = crate::storage::open(&url, 2).await.unwrap();
        (Evaluator::new(Arc::new(Rulesets::new(storage)), "here".into()), dir)
    }

    fn member(room: &mut RoomPushContext, user: &str, membership: &str, name: Option<&str>) {
        let mut content = json!({ "membership": membership });
        if let Some(name) = name {
            content["displayname"] = json!(name);
        }
        room.apply("m.room.member", user, user, &content, &rules());
    }

    fn message(sender: &str, content: Value) -> String {
        json!({ "type": "m.room.message", "sender": sender, "room_id": "!r", "content": content }).to_string()
    }

    async fn rows(e: &Evaluator, room: &mut RoomPushContext, sender: &str, content: Value) -> Vec<(String, bool)> {
        let mut rows: Vec<(String, bool)> = e
            .evaluate(room, sender, &message(sender, content.clone()), &content)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.user_id, r.highlight))
            .collect();
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn local_members_but_the_sender_are_notified_and_mentions_highlight() {
        let (e, _dir) = evaluator().await;
        let mut room = RoomPushContext::new_room("!r").unwrap();
        room.apply("m.room.create", "", "@a:here", &json!({ "room_version": "12" }), &rules());
        for user in ["@a:here", "@b:here", "@c:here", "@far:there"] {
            member(&mut room, user, "join", None);
        }
        member(&mut room, "@gone:here", "join", None);
        member(&mut room, "@gone:here", "leave", None);
        let plain = json!({ "msgtype": "m.text", "body": "hello" });
        let no = |u: &str| (u.to_owned(), false);
        assert_eq!(rows(&e, &mut room, "@a:here", plain.clone()).await, vec![no("@b:here"), no("@c:here")]);

        let mention = json!({ "msgtype": "m.text", "body": "hi", "m.mentions": { "user_ids": ["@c:here"] } });
        let highlighted = rows(&e, &mut room, "@a:here", mention).await;
        assert_eq!(highlighted, vec![no("@b:here"), ("@c:here".to_owned(), true)]);

        // @room needs the sender's notification power (the creator has it in v12).
        let room_mention = json!({ "msgtype": "m.text", "body": "all", "m.mentions": { "room": true } });
        let by_creator = rows(&e, &mut room, "@a:here", room_mention.clone()).await;
        assert!(by_creator.iter().all(|(_, h)| *h), "{by_creator:?}");
        let by_member = rows(&e, &mut room, "@b:here", room_mention).await;
        assert!(by_member.iter().all(|(_, h)| !*h), "{by_member:?}");

        // Member events match .m.rule.member_event: no notification.
        let join = json!({ "membership": "join" });
        let json = json!({ "type": "m.room.member", "state_key": "@d:here", "sender": "@d:here", "content": join });
        assert!(e.evaluate(&mut room, "@d:here", &json.to_string(), &join).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn two_members_make_a_one_to_one_room_and_threads_are_kept() {
        let (e, _dir) = evaluator().await;
        let mut room = RoomPushContext::new_room("!r").unwrap();
        member(&mut room, "@a:here", "join", None);
        member(&mut room, "@b:here", "join", Some("Bee"));
        let reply = json!({ "body": "x", "m.relates_to": { "rel_type": "m.thread", "event_id": "$root" } });
        let rows = e.evaluate(&mut room, "@a:here", &message("@a:here", reply.clone()), &reply).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].thread_id, "$root");
        let actions: Value = serde_json::from_str(&rows[0].actions).unwrap();
        assert_eq!(actions, json!(["notify", { "set_tweak": "sound", "value": "default" }]), "room_one_to_one");
    }

    #[test]
    fn threads_of_events() {
        assert_eq!(thread_of(&json!({ "m.relates_to": { "rel_type": "m.thread", "event_id": "$t" } })), "$t");
        assert_eq!(thread_of(&json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": "$t" } })), "main");
        assert_eq!(thread_of(&json!({ "body": "x" })), MAIN_THREAD);
    }
}
