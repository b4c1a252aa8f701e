//! POST /createRoom: the spec's sequence of initial events.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{EventDraft, Origin, Rooms, pdu};
use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
pub struct CreateRoomRequest {
    pub preset: Option<String>,
    pub visibility: Option<String>,
    pub room_alias_name: Option<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    #[serde(default)]
    pub invite: Vec<String>,
    #[serde(default)]
    pub is_direct: bool,
    #[serde(default)]
    pub initial_state: Vec<InitialStateEvent>,
    pub creation_content: Option<Map<String, Value>>,
    pub power_level_content_override: Option<Map<String, Value>>,
    pub room_version: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InitialStateEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub state_key: String,
    pub content: Value,
}

/// The power level needed for state events of these types, by default.
const STATE_EVENT_LEVELS: &[(&str, i64)] = &[
    ("m.room.name", 50),
    ("m.room.avatar", 50),
    ("m.room.canonical_alias", 50),
    ("m.room.topic", 50),
    ("m.room.encryption", 100),
    ("m.room.history_visibility", 100),
    ("m.room.power_levels", 100),
    ("m.room.server_acl", 100),
    ("m.room.tombstone", 100),
];

impl Rooms {
    pub async fn create_room(&self, creator: &str, request: CreateRoomRequest) -> Result<String> {
        let version = request.room_version.clone().unwrap_or_else(|| self.config.default_room_version.clone());
        let rules = pdu::rules_for(&version)?;
        let preset = match request.preset.as_deref() {
            Some(preset @ ("private_chat" | "public_chat" | "trusted_private_chat")) => preset.to_owned(),
            Some(other) => return Err(Error::bad_json(format!("Unknown preset {other:?}"))),
            None if request.visibility.as_deref() == Some("public") => "public_chat".to_owned(),
            None => "private_chat".to_owned(),
        };
        let public = match request.visibility.as_deref() {
            None | Some("private") => false,
            Some("public") => true,
            Some(other) => return Err(Error::bad_json(format!("Unknown visibility {other:?}"))),
        };
        let mut invitees = Vec::new();
        for user in &request.invite {
            let parsed =
                ruma::UserId::parse(user).map_err(|_| Error::invalid_param(format!("Invalid user id {user}")))?;
            invitees.push(parsed.to_string());
        }
        let alias = match &request.room_alias_name {
            Some(name) => {
                let alias = format!("#{name}:{}", self.config.server_name);
                if name.is_empty() || name.contains([':', '#']) || ruma::RoomAliasId::parse(&alias).is_err() {
                    return Err(Error::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "M_INVALID_PARAM",
                        "Invalid room_alias_name",
                    ));
                }
                if self.storage.get_alias(&alias).await?.is_some() {
                    return Err(Error::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "M_ROOM_IN_USE",
                        "The room alias is already taken",
                    ));
                }
                Some(alias)
            }
            None => None,
        };
        let trusted = preset == "trusted_private_chat";

        // 1. m.room.create
        let mut create = request.creation_content.clone().unwrap_or_default();
        create.insert("room_version".into(), json!(version));
        if !rules.authorization.use_room_create_sender {
            create.insert("creator".into(), json!(creator));
        }
        if trusted && rules.authorization.additional_room_creators && !invitees.is_empty() {
            create.insert("additional_creators".into(), json!(invitees));
        }
        let room = self.timeline.create_room(&version, creator, Value::Object(create.clone())).await?;
        let room_id = room.room_id;
        let origin = Origin { sender: creator, txn: None };

        // 2. The creator joins.
        self.set_membership(&room_id, creator, creator, "join", None, json!({})).await?;

        // 3. Power levels: creators of v12+ rooms are not listed (their power is unbounded).
        let creators_privileged = rules.authorization.explicitly_privilege_room_creators;
        let mut users = Map::new();
        if !creators_privileged {
            users.insert(creator.to_owned(), json!(100));
        }
        if trusted {
            let additional: Vec<String> = create
                .get("additional_creators")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            for user in &invitees {
                if !(creators_privileged && additional.contains(user)) {
                    users.insert(user.clone(), json!(100));
                }
            }
        }
        let mut events: Map<String, Value> =
            STATE_EVENT_LEVELS.iter().map(|(t, l)| ((*t).to_owned(), json!(l))).collect();
        if creators_privileged {
            // v12+: a tombstone must need more than any other state event.
            events.insert("m.room.tombstone".into(), json!(150));
        }
        let mut levels = json!({
            "users": users,
            "users_default": 0,
            "events": events,
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": if preset == "public_chat" { 0 } else { 50 },
            "notifications": { "room": 50 },
        });
        if let Some(overrides) = &request.power_level_content_override {
            for (key, value) in overrides {
                levels[key] = value.clone();
            }
        }
        self.timeline.append(&room_id, &origin, &EventDraft::state("m.room.power_levels", "", levels)).await?;

        // 4. Canonical alias.
        if let Some(alias) = &alias {
            if !self.storage.create_alias(alias, &room_id, creator).await? {
                return Err(Error::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "M_ROOM_IN_USE",
                    "The room alias is already taken",
                ));
            }
            let content = json!({ "alias": alias });
            self.timeline.append(&room_id, &origin, &EventDraft::state("m.room.canonical_alias", "", content)).await?;
        }

        // 5. Preset events (initial_state may override them, so they are skipped then).
        let overridden = |kind: &str| request.initial_state.iter().any(|e| e.kind == kind && e.state_key.is_empty());
        let join_rule = if preset == "public_chat" { "public" } else { "invite" };
        let guest_access = if preset == "public_chat" { "forbidden" } else { "can_join" };
        let preset_events = [
            ("m.room.join_rules", json!({ "join_rule": join_rule })),
            ("m.room.history_visibility", json!({ "history_visibility": "shared" })),
            ("m.room.guest_access", json!({ "guest_access": guest_access })),
        ];
        for (kind, content) in preset_events {
            if !overridden(kind) {
                self.timeline.append(&room_id, &origin, &EventDraft::state(kind, "", content)).await?;
            }
        }

        // 6. initial_state.
        for event in &request.initial_state {
            if event.kind == "m.room.member" || event.kind == "m.room.create" || event.kind == "m.room.power_levels" {
                return Err(Error::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "M_INVALID_ROOM_STATE",
                    format!("{} cannot be set through initial_state", event.kind),
                ));
            }
            let draft = EventDraft::state(&event.kind, &event.state_key, event.content.clone());
            self.timeline.append(&room_id, &origin, &draft).await?;
        }

        // 7. Name and topic.
        if let Some(name) = &request.name {
            let draft = EventDraft::state("m.room.name", "", json!({ "name": name }));
            self.timeline.append(&room_id, &origin, &draft).await?;
        }
        if let Some(topic) = &request.topic {
            let content = json!({
                "topic": topic,
                "m.topic": { "m.text": [{ "body": topic, "mimetype": "text/plain" }] },
            });
            self.timeline.append(&room_id, &origin, &EventDraft::state("m.room.topic", "", content)).await?;
        }

        // 8. Invites.
        for user in &invitees {
            let extra = if request.is_direct { json!({ "is_direct": true }) } else { json!({}) };
            self.set_membership(&room_id, creator, user, "invite", None, extra).await?;
        }

        if public {
            self.storage.set_room_public(&room_id, true).await?;
        }
        tracing::info!(%room_id, %version, %creator, "room created");
        Ok(room_id)
    }
}
