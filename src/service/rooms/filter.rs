//! Room event filters (the spec's RoomEventFilter), shared by /messages, /context and /sync.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::storage::StoredEvent;

/// The room event filter fields /messages applies.
#[derive(Default)]
pub struct EventFilter {
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
    pub contains_url: Option<bool>,
    pub lazy_load_members: bool,
    pub include_redundant_members: bool,
    pub limit: Option<usize>,
}

impl EventFilter {
    pub fn parse(filter: Option<&Value>) -> Result<Self> {
        let Some(filter) = filter else { return Ok(Self::default()) };
        let strings = |key: &str| -> Result<Option<Vec<String>>> {
            match filter.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => serde_json::from_value(value.clone())
                    .map(Some)
                    .map_err(|_| Error::bad_json(format!("filter.{key} must be a list of strings"))),
            }
        };
        Ok(Self {
            types: strings("types")?,
            not_types: strings("not_types")?.unwrap_or_default(),
            senders: strings("senders")?,
            not_senders: strings("not_senders")?.unwrap_or_default(),
            contains_url: filter.get("contains_url").and_then(Value::as_bool),
            lazy_load_members: filter.get("lazy_load_members").and_then(Value::as_bool).unwrap_or(false),
            include_redundant_members: filter
                .get("include_redundant_members")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            limit: match filter.get("limit") {
                None | Some(Value::Null) => None,
                Some(limit) => {
                    Some(limit.as_u64().ok_or_else(|| Error::bad_json("filter.limit must be a number"))? as usize)
                }
            },
        })
    }

    pub fn matches(&self, event: &StoredEvent, content: &Value) -> bool {
        let type_matches = |pattern: &String| glob_match(pattern, &event.event_type);
        if self.not_types.iter().any(type_matches) || self.not_senders.contains(&event.sender) {
            return false;
        }
        if self.types.as_ref().is_some_and(|types| !types.iter().any(type_matches)) {
            return false;
        }
        if self.senders.as_ref().is_some_and(|senders| !senders.contains(&event.sender)) {
            return false;
        }
        if let Some(wanted) = self.contains_url {
            let has_url = content.get("url").is_some_and(Value::is_string);
            if has_url != wanted {
                return false;
            }
        }
        true
    }
}

/// The `content` of a stored event.
pub fn content_of(event: &StoredEvent) -> Result<Value> {
    super::format::content(event)
}

/// Event type patterns: `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(remaining) = text.strip_prefix(prefix) else { return false };
            if rest.is_empty() {
                return true;
            }
            (0..=remaining.len()).any(|i| remaining.is_char_boundary(i) && glob_match(rest, &remaining[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_globs() {
        assert!(glob_match("m.room.*", "m.room.message"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("m.*.message", "m.room.message"));
        assert!(!glob_match("m.room.message", "m.room.messages"));
        assert!(!glob_match("m.room.*", "m.call.invite"));
    }
}
