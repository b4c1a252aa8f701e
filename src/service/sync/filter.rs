//! The parts of a sync filter (stored by id, or inline JSON) that /sync applies.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::service::rooms::filter::{EventFilter, content_of, glob_match};
use crate::storage::StoredEvent;

/// Timeline events per room when the filter sets no limit.
const DEFAULT_TIMELINE_LIMIT: usize = 10;

#[derive(Default)]
pub struct SyncFilter {
    timeline: EventFilter,
    timeline_limit: Option<usize>,
    state: EventFilter,
    pub lazy_load_members: bool,
    pub include_leave: bool,
    /// `room.timeline.unread_thread_notifications`: counts per thread.
    pub unread_thread_notifications: bool,
    rooms: Option<Vec<String>>,
    not_rooms: Vec<String>,
    account_data_types: Option<Vec<String>>,
    account_data_not_types: Vec<String>,
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
        Ok(Self {
            lazy_load_members: state.lazy_load_members,
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
        Ok(self.timeline.matches(event, &content_of(event)?))
    }

    pub fn state_allows(&self, event: &StoredEvent) -> bool {
        content_of(event).map(|c| self.state.matches(event, &c)).unwrap_or(false)
    }

    pub fn account_data_allowed(&self, data_type: &str) -> bool {
        !self.account_data_not_types.iter().any(|t| glob_match(t, data_type))
            && self.account_data_types.as_ref().is_none_or(|types| types.iter().any(|t| glob_match(t, data_type)))
    }
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
}
