//! The parts of a sync filter (stored by id, or inline JSON) that /sync applies.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::service::rooms::filter::{EventFilter, glob_match};
use crate::storage::StoredEvent;

/// Timeline events per room when the filter sets no limit.
const DEFAULT_TIMELINE_LIMIT: usize = 10;

#[derive(Default)]
pub struct SyncFilter {
    timeline: EventFilter,
    timeline_limit: Option<usize>,
    state: EventFilter,
    pub lazy_load_members: bool,
    pub include_redundant_members: bool,
    pub include_leave: bool,
    /// `room.timeline.unread_thread_notifications`: counts per thread.
    pub unread_thread_notifications: bool,
    rooms: Option<Vec<String>>,
    not_rooms: Vec<String>,
    account_data_types: Option<Vec<String>>,
    account_data_not_types: Vec<String>,
    presence_types: Option<Vec<String>>,
    presence_not_types: Vec<String>,
    /// `event_fields`: paths of the fields to keep in room events (all when `None`).
    event_fields: Option<Vec<Vec<String>>>,
    /// `event_format: federation`: room events as PDUs.
    federation_format: bool,
}

impl SyncFilter {
    pub fn from_json(filter: &Value) -> Result<Self> {
        if !filter.is_object() {
            return Err(Error::bad_json("The filter must be a JSON object"));
        }
        let room = filter.get("room");
        let section = |name: &str| room.and_then(|r| r.get(name));
        let strings = |value: Option<&Value>| -> Result<Option<Vec<String>>> {
            match value {
                None | Some(Value::Null) => Ok(None),
                Some(v) => serde_json::from_value(v.clone())
                    .map(Some)
                    .map_err(|_| Error::bad_json("Expected a list of strings")),
            }
        };
        let timeline = EventFilter::parse(section("timeline"))?;
        let state = EventFilter::parse(section("state"))?;
        let timeline_limit = match section("timeline").and_then(|t| t.get("limit")) {
            None | Some(Value::Null) => None,
            Some(limit) => {
                Some(limit.as_u64().ok_or_else(|| Error::bad_json("timeline.limit must be a number"))? as usize)
            }
        };
        let account_data = filter.get("account_data");
        let presence = filter.get("presence");
        Ok(Self {
            lazy_load_members: state.lazy_load_members,
            include_redundant_members: state.include_redundant_members,
            timeline,
            timeline_limit,
            state,
            include_leave: room.and_then(|r| r.get("include_leave")).and_then(Value::as_bool).unwrap_or(false),
            unread_thread_notifications: section("timeline")
                .and_then(|t| t.get("unread_thread_notifications"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            rooms: strings(room.and_then(|r| r.get("rooms")))?,
            not_rooms: strings(room.and_then(|r| r.get("not_rooms")))?.unwrap_or_default(),
            account_data_types: strings(account_data.and_then(|a| a.get("types")))?,
            account_data_not_types: strings(account_data.and_then(|a| a.get("not_types")))?.unwrap_or_default(),
            presence_types: strings(presence.and_then(|a| a.get("types")))?,
            presence_not_types: strings(presence.and_then(|a| a.get("not_types")))?.unwrap_or_default(),
            event_fields: strings(filter.get("event_fields"))?
                .map(|fields| fields.iter().map(|f| field_path(f)).collect()),
            federation_format: filter.get("event_format").and_then(Value::as_str) == Some("federation"),
        })
    }

    pub fn timeline_limit(&self) -> usize {
        self.timeline_limit.unwrap_or(DEFAULT_TIMELINE_LIMIT).clamp(1, 1000)
    }

    pub fn room_allowed(&self, room_id: &str) -> bool {
        !self.not_rooms.iter().any(|r| r == room_id)
            && self.rooms.as_ref().is_none_or(|rooms| rooms.iter().any(|r| r == room_id))
    }

    pub fn timeline_allows(&self, event: &StoredEvent) -> Result<bool> {
        Ok(self.timeline.matches(event, event.content().map_err(Error::internal)?))
    }

    pub fn state_allows(&self, event: &StoredEvent) -> bool {
        event.content().map(|c| self.state.matches(event, c)).unwrap_or(false)
    }

    pub fn account_data_allowed(&self, data_type: &str) -> bool {
        !self.account_data_not_types.iter().any(|t| glob_match(t, data_type))
            && self.account_data_types.as_ref().is_none_or(|types| types.iter().any(|t| glob_match(t, data_type)))
    }

    /// Applies `event_format` and `event_fields` to formatted room events.
    pub fn shape_events(&self, formatted: Vec<Value>, stored: &[StoredEvent]) -> Vec<Value> {
        if self.event_fields.is_none() && !self.federation_format {
            return formatted;
        }
        formatted
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let event = match stored.get(i).filter(|_| self.federation_format) {
                    Some(stored) => as_pdu(stored, &client),
                    None => client,
                };
                match &self.event_fields {
                    Some(fields) => project(&event, fields),
                    None => event,
                }
            })
            .collect()
    }

    /// Whether `m.presence` events pass the filter's `presence` section.
    pub fn presence_allowed(&self) -> bool {
        const TYPE: &str = "m.presence";
        !self.presence_not_types.iter().any(|t| glob_match(t, TYPE))
            && self.presence_types.as_ref().is_none_or(|types| types.iter().any(|t| glob_match(t, TYPE)))
    }
}

/// `content.body` → `["content", "body"]`; `\.` is a literal dot in a key.
fn field_path(field: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                chars.next();
                parts.last_mut().expect("never empty").push('.');
            }
            '.' => parts.push(String::new()),
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    parts
}

/// The event with only the listed fields (those it has).
fn project(event: &Value, fields: &[Vec<String>]) -> Value {
    let mut out = Value::Object(Default::default());
    for path in fields {
        let mut source = event;
        let mut found = true;
        for key in path {
            match source.get(key) {
                Some(next) => source = next,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let mut target = &mut out;
        for key in &path[..path.len() - 1] {
            target = target
                .as_object_mut()
                .expect("only objects are built")
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Default::default()));
            if !target.is_object() {
                break;
            }
        }
        if let Some(map) = target.as_object_mut() {
            map.insert(path[path.len() - 1].clone(), source.clone());
        }
    }
    out
}

/// The stored PDU (as signed), with the client event's `unsigned` data.
fn as_pdu(stored: &StoredEvent, client: &Value) -> Value {
    let mut pdu: Value = serde_json::from_str(&stored.json).unwrap_or_else(|_| client.clone());
    if let (Some(map), Some(unsigned)) = (pdu.as_object_mut(), client.get("unsigned")) {
        map.insert("unsigned".into(), unsigned.clone());
    }
    pdu
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_sync_filter_sections() {
        let filter = SyncFilter::from_json(&json!({
            "room": {
                "timeline": { "limit": 3, "types": ["m.room.message"], "unread_thread_notifications": true },
                "state": { "lazy_load_members": true },
                "include_leave": true,
                "not_rooms": ["!b:x"],
            },
            "account_data": { "not_types": ["m.push_rules"] },
        }))
        .unwrap();
        assert_eq!(filter.timeline_limit(), 3);
        assert!(filter.lazy_load_members && filter.include_leave && filter.unread_thread_notifications);
        assert!(!SyncFilter::default().unread_thread_notifications);
        assert!(filter.room_allowed("!a:x") && !filter.room_allowed("!b:x"));
        assert!(!filter.account_data_allowed("m.push_rules") && filter.account_data_allowed("m.direct"));
        assert!(SyncFilter::from_json(&json!({ "room": { "timeline": { "limit": "x" } } })).is_err());
        assert_eq!(SyncFilter::default().timeline_limit(), 10);
    }

    #[test]
    fn event_fields_keep_only_the_listed_fields() {
        assert_eq!(field_path("content.body"), vec!["content", "body"]);
        assert_eq!(field_path("content.m\\.relates_to"), vec!["content", "m.relates_to"]);
        let event = json!({
            "type": "m.room.message",
            "sender": "@a:x",
            "content": { "body": "hi", "msgtype": "m.text", "m.relates_to": { "x": 1 } },
        });
        let fields: Vec<Vec<String>> =
            ["type", "content.body", "content.m\\.relates_to", "missing.field"].iter().map(|f| field_path(f)).collect();
        assert_eq!(
            project(&event, &fields),
            json!({ "type": "m.room.message", "content": { "body": "hi", "m.relates_to": { "x": 1 } } })
        );
    }
}
