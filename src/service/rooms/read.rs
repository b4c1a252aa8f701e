//! Reading rooms: single events, state, members and paginated history, each
//! filtered by history visibility.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::Rooms;
use super::filter::EventFilter;
use super::format::{client_event, content};
use super::visibility::VisibilityCheck;
use crate::error::{Error, Result};
use crate::storage::{Direction, StoredEvent};

/// A position in a room's topological order: `t<depth>_<stream>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub depth: i64,
    pub stream: i64,
}

impl Token {
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || Error::invalid_param(format!("Invalid pagination token {text:?}"));
        let rest = text.strip_prefix('t').ok_or_else(invalid)?;
        let (depth, stream) = rest.split_once('_').ok_or_else(invalid)?;
        Ok(Self { depth: depth.parse().map_err(|_| invalid())?, stream: stream.parse().map_err(|_| invalid())? })
    }

    /// The position just before an event (backward pagination continues below it).
    pub fn of(event: &StoredEvent) -> Self {
        Self { depth: event.depth, stream: event.stream_ordering }
    }

    /// The position just after an event (forward pagination continues above it).
    pub fn after(event: &StoredEvent) -> Self {
        Self { depth: event.depth, stream: event.stream_ordering + 1 }
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t{}_{}", self.depth, self.stream)
    }
}

#[derive(Debug, Clone, Default)]
pub struct MessagesRequest {
    pub from: Option<String>,
    pub to: Option<String>,
    pub backward: bool,
    pub limit: Option<usize>,
    pub filter: Option<Value>,
}

pub struct MessagesResponse {
    pub chunk: Vec<Value>,
    pub start: String,
    pub end: Option<String>,
    pub state: Vec<Value>,
}

impl Rooms {
    /// Client-format events, with `unsigned.redacted_because` filled in (state
    /// and membership listings need no relation aggregations).
    pub async fn format_events(&self, events: &[StoredEvent]) -> Result<Vec<Value>> {
        self.format_with(events, false).await
    }

    /// `with_prev`: add what each state event replaced (`unsigned.prev_content`).
    /// Timelines want it; full state listings of big rooms would pay one more
    /// event read per member for it.
    async fn format_with(&self, events: &[StoredEvent], with_prev: bool) -> Result<Vec<Value>> {
        let redaction_ids: Vec<String> = events.iter().filter_map(|e| e.redacted_by.clone()).collect();
        let replaced_ids: Vec<String> =
            if with_prev { events.iter().filter_map(|e| e.replaces_state.clone()).collect() } else { Vec::new() };
        let related: HashMap<String, StoredEvent> = self
            .storage
            .get_events(&[redaction_ids, replaced_ids].concat())
            .await?
            .into_iter()
            .map(|e| (e.event_id.clone(), e))
            .collect();
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let because = match event.redacted_by.as_ref().and_then(|id| related.get(id)) {
                Some(redaction) => Some(client_event(redaction, None)?),
                None => None,
            };
            let mut value = client_event(event, because)?;
            // State events say what they replaced, as clients expect (kick vs leave, renames).
            if let Some(previous) = event.replaces_state.as_ref().and_then(|id| related.get(id)) {
                value["unsigned"]["prev_content"] = content(previous)?;
                value["unsigned"]["prev_sender"] = json!(previous.sender);
                value["unsigned"]["replaces_state"] = json!(previous.event_id);
            }
            out.push(value);
        }
        Ok(out)
    }

    /// Timeline events for a viewer: client format plus the aggregations of
    /// `unsigned.m.relations` (latest edit, thread summary, references).
    pub async fn format_timeline(&self, events: &[StoredEvent], viewer: &str) -> Result<Vec<Value>> {
        let mut formatted = self.format_with(events, true).await?;
        let relations = self.aggregations(events, viewer).await?;
        for (value, event) in formatted.iter_mut().zip(events) {
            if let Some(aggregated) = relations.get(&event.event_id) {
                value["unsigned"]["m.relations"] = aggregated.clone();
            }
        }
        Ok(formatted)
    }

    /// Adds `unsigned.transaction_id` to the events the viewing device sent itself.
    pub async fn add_transaction_ids(&self, events: &mut [Value], user_id: &str, device_id: &str) -> Result<()> {
        let own: Vec<String> = events
            .iter()
            .filter(|e| e["sender"] == user_id)
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect();
        let txns: HashMap<String, String> =
            self.storage.txn_ids_of_events(user_id, device_id, &own).await?.into_iter().collect();
        if txns.is_empty() {
            return Ok(());
        }
        for event in events.iter_mut() {
            if let Some(txn) = event["event_id"].as_str().and_then(|id| txns.get(id)) {
                event["unsigned"]["transaction_id"] = json!(txn);
            }
        }
        Ok(())
    }

    /// GET /rooms/{roomId}/event/{eventId}: 404 unless it exists and the user may see it.
    pub async fn event_for_user(&self, room_id: &str, event_id: &str, user_id: &str) -> Result<Value> {
        let not_found = || Error::not_found("Event not found");
        let event = self.storage.get_event(event_id).await?.filter(|e| e.room_id == room_id).ok_or_else(not_found)?;
        let mut check = VisibilityCheck::new(self, room_id, user_id).await?;
        if !check.can_see(&event).await? {
            return Err(not_found());
        }
        Ok(self.format_timeline(std::slice::from_ref(&event), user_id).await?.remove(0))
    }

    /// The state a user may read: the current state while joined, or the state
    /// when they left; 403 otherwise.
    async fn readable_state(&self, room_id: &str, user_id: &str) -> Result<HashMap<(String, String), String>> {
        self.room_version(room_id).await.map_err(|_| Error::forbidden("You are not a member of this room"))?;
        let membership = self.storage.membership(room_id, user_id).await?;
        match membership.as_ref().map(|m| m.membership.as_str()) {
            Some("join") => Ok(self
                .storage
                .current_state(room_id)
                .await?
                .into_iter()
                .map(|e| ((e.event_type, e.state_key), e.event_id))
                .collect()),
            Some("leave" | "ban") => {
                let member = membership.expect("matched above");
                let leave =
                    self.storage.get_event(&member.event_id).await?.ok_or_else(|| Error::internal("missing"))?;
                Ok(self
                    .state
                    .full_state(leave.state_group)
                    .await?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect())
            }
            _ => {
                let visibility = self
                    .state_content(room_id, "m.room.history_visibility", "")
                    .await?
                    .and_then(|c| c.get("history_visibility").and_then(Value::as_str).map(str::to_owned));
                if visibility.as_deref() == Some("world_readable") {
                    return Ok(self
                        .storage
                        .current_state(room_id)
                        .await?
                        .into_iter()
                        .map(|e| ((e.event_type, e.state_key), e.event_id))
                        .collect());
                }
                Err(Error::forbidden("You are not a member of this room"))
            }
        }
    }

    pub async fn state_for_user(&self, room_id: &str, user_id: &str) -> Result<Vec<Value>> {
        let state = self.readable_state(room_id, user_id).await?;
        let ids: Vec<String> = state.into_values().collect();
        let mut events = self.storage.get_events(&ids).await?;
        events.sort_by_key(|e| e.stream_ordering);
        self.format_events(&events).await
    }

    /// One state event: its content, or the whole event with `format=event`.
    pub async fn state_event_for_user(
        &self,
        room_id: &str,
        user_id: &str,
        event_type: &str,
        state_key: &str,
        whole_event: bool,
    ) -> Result<Value> {
        let state = self.readable_state(room_id, user_id).await?;
        let event_id = state
            .get(&(event_type.to_owned(), state_key.to_owned()))
            .ok_or_else(|| Error::not_found("State event not found"))?;
        let event = self.storage.get_event(event_id).await?.ok_or_else(|| Error::not_found("State event not found"))?;
        if whole_event {
            Ok(self.format_events(std::slice::from_ref(&event)).await?.remove(0))
        } else {
            content(&event)
        }
    }

    /// GET /members: membership events, optionally filtered.
    /// A `/messages` token (`t…`) or a `/sync` `next_batch` (`s…`), which the
    /// spec allows too: it stands just after the room's last event it covers.
    pub async fn pagination_token(&self, room_id: &str, text: &str) -> Result<Token> {
        if !text.starts_with('s') {
            return Token::parse(text);
        }
        let sync = crate::service::sync::SyncToken::parse(text)?;
        let latest = self.storage.room_events_in_range(room_id, 0, sync.events, 1).await?;
        Ok(latest.first().map(Token::after).unwrap_or(Token { depth: 0, stream: 0 }))
    }

    pub async fn members_for_user(
        &self,
        room_id: &str,
        user_id: &str,
        membership: Option<&str>,
        not_membership: Option<&str>,
        at: Option<&str>,
    ) -> Result<Vec<Value>> {
        let mut state = self.readable_state(room_id, user_id).await?;
        if let Some(at) = at {
            // The membership as of the last event at or before the token.
            let token = self.pagination_token(room_id, at).await?;
            let position = (token.depth, token.stream.saturating_add(1));
            let page = self.storage.room_events_page(room_id, position, Direction::Backward, 1).await?;
            if let Some(event) = page.first() {
                let mut check = VisibilityCheck::new(self, room_id, user_id).await?;
                if !check.can_see(event).await? {
                    return Err(Error::forbidden("You cannot see the room at that point"));
                }
                state = self
                    .state
                    .full_state(event.state_group)
                    .await?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            }
        }
        let ids: Vec<String> = state.into_iter().filter(|((t, _), _)| t == "m.room.member").map(|(_, id)| id).collect();
        let mut events = self.storage.get_events(&ids).await?;
        events.retain(|event| {
            let value = content(event).ok();
            let m = value.as_ref().and_then(|c| c.get("membership")).and_then(Value::as_str).unwrap_or("");
            // Given both, the spec makes them an "or".
            match (membership, not_membership) {
                (Some(wanted), Some(unwanted)) => wanted == m || unwanted != m,
                (Some(wanted), None) => wanted == m,
                (None, Some(unwanted)) => unwanted != m,
                (None, None) => true,
            }
        });
        events.sort_by(|a, b| a.state_key.cmp(&b.state_key));
        self.format_events(&events).await
    }

    /// GET /joined_members: only for joined users.
    pub async fn joined_members(&self, room_id: &str, user_id: &str) -> Result<Value> {
        self.room_version(room_id).await.map_err(|_| Error::forbidden("You are not joined to this room"))?;
        self.require_joined(room_id, user_id).await?;
        let members = self.storage.room_members(room_id).await?;
        let ids: Vec<String> = members.into_iter().filter(|m| m.membership == "join").map(|m| m.event_id).collect();
        let mut joined = Map::new();
        for event in self.storage.get_events(&ids).await? {
            let c = content(&event)?;
            let mut profile = Map::new();
            if let Some(name) = c.get("displayname").filter(|v| v.is_string()) {
                profile.insert("display_name".into(), name.clone());
            }
            if let Some(url) = c.get("avatar_url").filter(|v| v.is_string()) {
                profile.insert("avatar_url".into(), url.clone());
            }
            if let Some(user) = event.state_key {
                joined.insert(user, Value::Object(profile));
            }
        }
        Ok(json!({ "joined": joined }))
    }

    /// GET /messages: a page of visible events from a position, in either direction.
    pub async fn messages(&self, room_id: &str, user_id: &str, request: MessagesRequest) -> Result<MessagesResponse> {
        self.room_version(room_id).await.map_err(|_| Error::forbidden("You are not a member of this room"))?;
        let mut check = VisibilityCheck::new(self, room_id, user_id).await?;
        if check.current_membership().is_none() {
            let readable = self.readable_state(room_id, user_id).await;
            readable?;
        }
        let filter = EventFilter::parse(request.filter.as_ref())?;
        let direction = if request.backward { Direction::Backward } else { Direction::Forward };
        let start = match &request.from {
            Some(from) => self.pagination_token(room_id, from).await?,
            // Just after the room's latest event, so that it is the first one returned.
            None if request.backward => {
                let latest =
                    self.storage.room_events_page(room_id, (i64::MAX, i64::MAX), Direction::Backward, 1).await?;
                latest
                    .first()
                    .map(|e| Token { depth: e.depth, stream: e.stream_ordering + 1 })
                    .unwrap_or(Token { depth: 0, stream: 0 })
            }
            None => Token { depth: 0, stream: 0 },
        };
        let to = match request.to.as_deref() {
            Some(to) => Some(self.pagination_token(room_id, to).await?),
            None => None,
        };
        // The query's limit, else the filter's.
        let limit = request.limit.or(filter.limit).unwrap_or(10).clamp(1, 1000);

        let mut chunk = Vec::new();
        let mut position = start;
        let mut exhausted = false;
        // Filtered-out and invisible events do not count towards the limit, so a
        // page may need several reads; each read is bounded.
        'pages: while chunk.len() < limit {
            let batch = self
                .storage
                .room_events_page(room_id, (position.depth, position.stream), direction, limit as i64)
                .await?;
            if batch.is_empty() {
                exhausted = true;
                break;
            }
            let batch_len = batch.len();
            for event in batch {
                let token = Token::of(&event);
                if let Some(to) = to {
                    let past = match direction {
                        Direction::Backward => (token.depth, token.stream) < (to.depth, to.stream),
                        Direction::Forward => (token.depth, token.stream) >= (to.depth, to.stream),
                    };
                    if past {
                        exhausted = true;
                        break 'pages;
                    }
                }
                position = match direction {
                    Direction::Backward => token,
                    Direction::Forward => Token::after(&event),
                };
                if !check.can_see(&event).await? {
                    continue;
                }
                let c = content(&event)?;
                if filter.matches(&event, &c) {
                    chunk.push(event);
                    if chunk.len() == limit {
                        break 'pages;
                    }
                }
            }
            if batch_len < limit {
                exhausted = true;
                break;
            }
        }

        let state = if filter.lazy_load_members { self.lazy_members(room_id, &chunk).await? } else { Vec::new() };
        let formatted = self.format_timeline(&chunk, user_id).await?;
        let start_token = match &request.from {
            Some(from) => from.clone(),
            None => start.to_string(),
        };
        Ok(MessagesResponse {
            chunk: formatted,
            start: start_token,
            end: (!exhausted).then(|| position.to_string()),
            state,
        })
    }

    /// The membership events of the senders in a page, for lazy-loading clients.
    async fn lazy_members(&self, room_id: &str, events: &[StoredEvent]) -> Result<Vec<Value>> {
        let mut senders: Vec<&str> = events.iter().map(|e| e.sender.as_str()).collect();
        senders.sort_unstable();
        senders.dedup();
        let mut ids = Vec::new();
        for sender in senders {
            if let Some(id) = self.storage.current_state_event_id(room_id, "m.room.member", sender).await? {
                ids.push(id);
            }
        }
        let members = self.storage.get_events(&ids).await?;
        self.format_events(&members).await
    }
}

impl Rooms {
    /// GET /rooms/{roomId}/context/{eventId}: the event, what surrounds it, and the state at it.
    pub async fn context(
        &self,
        room_id: &str,
        event_id: &str,
        viewer: &str,
        limit: usize,
        filter: Option<Value>,
    ) -> Result<Value> {
        let not_found = || Error::not_found("Event not found");
        let event = self.storage.get_event(event_id).await?.filter(|e| e.room_id == room_id).ok_or_else(not_found)?;
        let mut check = VisibilityCheck::new(self, room_id, viewer).await?;
        if !check.can_see(&event).await? {
            return Err(not_found());
        }
        let filter = EventFilter::parse(filter.as_ref())?;
        let limit = limit.min(100);
        let before_count = limit / 2;
        let after_count = limit - before_count;
        let token = Token::of(&event);
        let mut before = Vec::new();
        for candidate in self
            .storage
            .room_events_page(room_id, (token.depth, token.stream), Direction::Backward, limit as i64 * 2)
            .await?
        {
            if before.len() == before_count {
                break;
            }
            if check.can_see(&candidate).await? && filter.matches(&candidate, &content(&candidate)?) {
                before.push(candidate);
            }
        }
        let mut after = Vec::new();
        for candidate in self
            .storage
            .room_events_page(room_id, (token.depth, token.stream + 1), Direction::Forward, limit as i64 * 2)
            .await?
        {
            if after.len() == after_count {
                break;
            }
            if check.can_see(&candidate).await? && filter.matches(&candidate, &content(&candidate)?) {
                after.push(candidate);
            }
        }
        let start = before.last().map(Token::of).unwrap_or(token);
        let end = after.last().map(Token::after).unwrap_or(Token::after(&event));
        let state_map = self.state.full_state(event.state_group).await?;
        let mut state_events = self.storage.get_events(&state_map.values().cloned().collect::<Vec<_>>()).await?;
        if filter.lazy_load_members {
            let senders: Vec<&str> =
                before.iter().chain(after.iter()).chain(std::iter::once(&event)).map(|e| e.sender.as_str()).collect();
            state_events.retain(|e| {
                e.event_type != "m.room.member" || e.state_key.as_deref().is_some_and(|k| senders.contains(&k))
            });
        }
        state_events.sort_by_key(|e| e.stream_ordering);
        Ok(json!({
            "event": self.format_timeline(std::slice::from_ref(&event), viewer).await?.remove(0),
            "events_before": self.format_timeline(&before, viewer).await?,
            "events_after": self.format_timeline(&after, viewer).await?,
            "start": start.to_string(),
            "end": end.to_string(),
            "state": self.format_events(&state_events).await?,
        }))
    }

    /// GET /rooms/{roomId}/timestamp_to_event: the closest visible event to a time.
    pub async fn event_at_timestamp(&self, room_id: &str, viewer: &str, ts: i64, backward: bool) -> Result<Value> {
        self.room_version(room_id).await.map_err(|_| Error::forbidden("You are not a member of this room"))?;
        let mut check = VisibilityCheck::new(self, room_id, viewer).await?;
        let direction = if backward { Direction::Backward } else { Direction::Forward };
        let event = self.storage.event_near_timestamp(room_id, ts, direction).await?;
        match event {
            Some(event) if check.can_see(&event).await? => {
                Ok(json!({ "event_id": event.event_id, "origin_server_ts": event.origin_server_ts }))
            }
            _ => Err(Error::not_found("No event found near that time")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = Token { depth: 12, stream: 345 };
        assert_eq!(Token::parse(&token.to_string()).unwrap(), token);
        for bad in ["", "t", "t1", "x1_2", "t1_x", "t_1"] {
            assert_eq!(Token::parse(bad).unwrap_err().errcode, "M_INVALID_PARAM", "{bad}");
        }
    }
}
