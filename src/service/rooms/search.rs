//! POST /search: full-text search of the rooms a user is in.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Rooms;
use super::visibility::VisibilityCheck;
use crate::error::{Error, Result};
use crate::storage::Direction;

const ALL_KEYS: &[&str] = &["content.body", "content.name", "content.topic"];

#[derive(Debug, Deserialize)]
pub struct RoomEventsCriteria {
    pub search_term: String,
    pub keys: Option<Vec<String>>,
    #[serde(default)]
    pub filter: Option<Value>,
    pub order_by: Option<String>,
    pub event_context: Option<EventContextRequest>,
    #[serde(default)]
    pub include_state: bool,
}

#[derive(Debug, Deserialize)]
pub struct EventContextRequest {
    pub before_limit: Option<usize>,
    pub after_limit: Option<usize>,
    #[serde(default)]
    pub include_profile: bool,
}

impl Rooms {
    pub async fn search(&self, user_id: &str, criteria: RoomEventsCriteria, next_batch: Option<&str>) -> Result<Value> {
        let keys = criteria.keys.clone().unwrap_or_else(|| ALL_KEYS.iter().map(|k| (*k).to_owned()).collect());
        if let Some(bad) = keys.iter().find(|k| !ALL_KEYS.contains(&k.as_str())) {
            return Err(Error::invalid_param(format!("Unknown search key {bad}")));
        }
        let recent = match criteria.order_by.as_deref() {
            None | Some("rank") => false,
            Some("recent") => true,
            Some(_) => return Err(Error::invalid_param("order_by must be \"rank\" or \"recent\"")),
        };
        let skip = match next_batch {
            Some(token) => token
                .strip_prefix('s')
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| Error::invalid_param("Invalid next_batch"))?,
            None => 0,
        };
        let filter = criteria.filter.as_ref();
        let strings = |key: &str| -> Option<Vec<String>> {
            filter.and_then(|f| f.get(key)).and_then(|v| serde_json::from_value(v.clone()).ok())
        };
        let limit = filter.and_then(|f| f.get("limit")).and_then(Value::as_i64).unwrap_or(10).clamp(1, 100);
        let mut rooms = self.joined_rooms(user_id).await?;
        if let Some(only) = strings("rooms") {
            rooms.retain(|r| only.contains(r));
        }
        if let Some(not) = strings("not_rooms") {
            rooms.retain(|r| !not.contains(r));
        }
        let (hits, count) =
            self.storage.search_events(&rooms, &criteria.search_term, &keys, recent, skip, limit).await?;

        let mut checks: HashMap<String, VisibilityCheck<'_>> = HashMap::new();
        let ignored = self.ignored.of(user_id).await?;
        let mut results = Vec::new();
        let mut result_rooms = Vec::new();
        for hit in hits.iter() {
            let room_id = hit.event.room_id.clone();
            if !checks.contains_key(&room_id) {
                let check = VisibilityCheck::with_ignored(self, &room_id, user_id, ignored.clone()).await?;
                checks.insert(room_id.clone(), check);
            }
            let check = checks.get_mut(&room_id).expect("inserted above");
            if !check.can_see(&hit.event).await? {
                continue;
            }
            let event = self.format_timeline(std::slice::from_ref(&hit.event), user_id).await?.remove(0);
            let mut result = json!({ "rank": hit.rank, "result": event });
            if let Some(context) = &criteria.event_context {
                result["context"] = self.search_context(&hit.event, context, check).await?;
            }
            results.push(result);
            if !result_rooms.contains(&room_id) {
                result_rooms.push(room_id);
            }
        }
        let mut room_events = json!({
            "count": count,
            "highlights": criteria.search_term.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>(),
            "results": results,
        });
        if skip + (hits.len() as i64) < count {
            room_events["next_batch"] = json!(format!("s{}", skip + hits.len() as i64));
        }
        if criteria.include_state {
            let mut state = Map::new();
            for room_id in &result_rooms {
                state.insert(room_id.clone(), Value::Array(self.state_for_user(room_id, user_id).await?));
            }
            room_events["state"] = Value::Object(state);
        }
        Ok(json!({ "search_categories": { "room_events": room_events } }))
    }

    async fn search_context(
        &self,
        event: &crate::storage::StoredEvent,
        request: &EventContextRequest,
        check: &mut VisibilityCheck<'_>,
    ) -> Result<Value> {
        let mut sides = Vec::new();
        for (direction, limit) in [
            (Direction::Backward, request.before_limit.unwrap_or(5)),
            (Direction::Forward, request.after_limit.unwrap_or(5)),
        ] {
            let mut picked = Vec::new();
            let limit = limit.min(20);
            let position = match direction {
                Direction::Backward => (event.depth, event.stream_ordering),
                Direction::Forward => (event.depth, event.stream_ordering + 1),
            };
            if limit > 0 {
                for candidate in
                    self.storage.room_events_page(&event.room_id, position, direction, limit as i64).await?
                {
                    if check.can_see(&candidate).await? {
                        picked.push(candidate);
                    }
                }
            }
            sides.push(picked);
        }
        let token = |e: Option<&crate::storage::StoredEvent>| super::Token::of(e.unwrap_or(event)).to_string();
        let mut context = json!({
            "start": token(sides[0].last()),
            "end": token(sides[1].last()),
            "events_before": self.format_events(&sides[0]).await?,
            "events_after": self.format_events(&sides[1]).await?,
        });
        if request.include_profile {
            let mut profiles = Map::new();
            for sender in sides.iter().flatten().map(|e| e.sender.clone()).chain(std::iter::once(event.sender.clone()))
            {
                if profiles.contains_key(&sender) {
                    continue;
                }
                if let Some(member) = self.state_content(&event.room_id, "m.room.member", &sender).await? {
                    let mut profile = Map::new();
                    for key in ["displayname", "avatar_url"] {
                        if let Some(value) = member.get(key).filter(|v| v.is_string()) {
                            profile.insert(key.into(), value.clone());
                        }
                    }
                    profiles.insert(sender, Value::Object(profile));
                }
            }
            context["profile_info"] = Value::Object(profiles);
        }
        Ok(context)
    }
}
