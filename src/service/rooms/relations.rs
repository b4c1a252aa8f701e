//! Relations: /relations, /threads, and the aggregations in `unsigned.m.relations`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::Rooms;
use super::format::content;
use crate::error::{Error, Result};
use crate::storage::{Direction, StoredEvent};

/// How deep `recurse=true` follows relations of relations (the spec's minimum is 3).
const MAX_RECURSION: usize = 3;

pub struct RelationsRequest<'a> {
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub backward: bool,
    pub limit: usize,
    pub recurse: bool,
}

pub struct Page {
    pub chunk: Vec<Value>,
    pub next_batch: Option<String>,
    pub recursion_depth: Option<usize>,
}

fn parse_stream_token(token: &str) -> Result<i64> {
    token
        .strip_prefix('r')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::invalid_param(format!("Invalid pagination token {token:?}")))
}

impl Rooms {
    /// GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
    pub async fn relations(
        &self,
        room_id: &str,
        parent: &str,
        viewer: &str,
        request: RelationsRequest<'_>,
    ) -> Result<Page> {
        // The parent must be visible to the viewer (404 otherwise).
        self.event_for_user(room_id, parent, viewer).await?;
        let direction = if request.backward { Direction::Backward } else { Direction::Forward };
        let from = match request.from {
            Some(token) => parse_stream_token(token)?,
            None if request.backward => i64::MAX,
            None => 0,
        };
        let to = request.to.map(parse_stream_token).transpose()?;
        let limit = request.limit.clamp(1, 1000);

        let mut events = Vec::new();
        let mut depth_reached = 0;
        if request.recurse {
            // Gather the relation tree breadth-first, then page it by stream position.
            let mut frontier = vec![parent.to_owned()];
            for depth in 1..=MAX_RECURSION {
                let mut next = Vec::new();
                for id in &frontier {
                    let children = self.storage.relations(id, None, None, 0, Direction::Forward, 10_000).await?;
                    next.extend(children.iter().map(|e| e.event_id.clone()));
                    events.extend(children);
                }
                if next.is_empty() {
                    break;
                }
                depth_reached = depth;
                frontier = next;
            }
            events.retain(|e| {
                let c = content(e).unwrap_or(Value::Null);
                let rel = c.get("m.relates_to").and_then(|r| r.get("rel_type")).and_then(Value::as_str);
                request.rel_type.is_none_or(|wanted| rel == Some(wanted))
                    && request.event_type.is_none_or(|wanted| e.event_type == wanted)
            });
            events.retain(|e| match direction {
                Direction::Backward => e.stream_ordering < from,
                Direction::Forward => e.stream_ordering > from,
            });
            events.sort_by_key(|e| e.stream_ordering);
            if direction == Direction::Backward {
                events.reverse();
            }
            events.truncate(limit + 1);
        } else {
            events = self
                .storage
                .relations(parent, request.rel_type, request.event_type, from, direction, limit as i64 + 1)
                .await?;
        }
        if let Some(to) = to {
            events.retain(|e| match direction {
                Direction::Backward => e.stream_ordering >= to,
                Direction::Forward => e.stream_ordering <= to,
            });
        }
        let more = events.len() > limit;
        events.truncate(limit);
        let mut check = super::visibility::VisibilityCheck::new(self, room_id, viewer).await?;
        let mut visible = Vec::with_capacity(events.len());
        for event in &events {
            if check.can_see(event).await? {
                visible.push(event.clone());
            }
        }
        Ok(Page {
            chunk: self.format_timeline(&visible, viewer).await?,
            next_batch: if more { events.last().map(|e| format!("r{}", e.stream_ordering)) } else { None },
            recursion_depth: request.recurse.then_some(depth_reached),
        })
    }

    /// GET /rooms/{roomId}/threads: thread roots by latest activity.
    pub async fn threads(
        &self,
        room_id: &str,
        viewer: &str,
        participated: bool,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        self.room_version(room_id).await.map_err(|_| Error::forbidden("You are not a member of this room"))?;
        let mut check = super::visibility::VisibilityCheck::new(self, room_id, viewer).await?;
        if check.current_membership().is_none() {
            return Err(Error::forbidden("You are not a member of this room"));
        }
        let before = from.map(parse_stream_token).transpose()?.unwrap_or(i64::MAX);
        let limit = limit.clamp(1, 100);
        let participant = participated.then_some(viewer);
        let summaries = self.storage.threads(room_id, participant, before, limit as i64 + 1).await?;
        let more = summaries.len() > limit;
        let summaries = &summaries[..summaries.len().min(limit)];
        let roots: Vec<String> = summaries.iter().map(|s| s.root.clone()).collect();
        let mut by_id: HashMap<String, StoredEvent> =
            self.storage.get_events(&roots).await?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
        let mut ordered = Vec::new();
        for root in &roots {
            if let Some(event) = by_id.remove(root)
                && check.can_see(&event).await?
            {
                ordered.push(event);
            }
        }
        Ok(Page {
            chunk: self.format_timeline(&ordered, viewer).await?,
            next_batch: if more { summaries.last().map(|s| format!("r{}", s.latest)) } else { None },
            recursion_depth: None,
        })
    }

    /// The `unsigned.m.relations` of each event that has any.
    pub(super) async fn aggregations(&self, events: &[StoredEvent], viewer: &str) -> Result<HashMap<String, Value>> {
        let ids: Vec<String> = events.iter().filter(|e| e.redacted_by.is_none()).map(|e| e.event_id.clone()).collect();
        let mut out: HashMap<String, Map<String, Value>> = HashMap::new();
        let oldest = events.iter().map(|e| e.stream_ordering).min().unwrap_or(i64::MAX);
        if ids.is_empty() || !self.timeline.relation_stored_after(oldest) {
            return Ok(HashMap::new());
        }
        let originals: HashMap<&str, &StoredEvent> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();

        // Edits: the latest edit by the original sender, of the same type, of a non-state event.
        let edits = self.storage.relation_rows(&ids, "m.replace").await?;
        let mut latest_edit: HashMap<&str, &str> = HashMap::new();
        for row in &edits {
            let Some(original) = originals.get(row.relates_to.as_str()) else { continue };
            if original.state_key.is_none() && row.sender == original.sender {
                latest_edit.insert(original.event_id.as_str(), row.event_id.as_str());
            }
        }
        let edit_ids: Vec<String> = latest_edit.values().map(|s| (*s).to_owned()).collect();
        let edit_events = self.storage.get_events(&edit_ids).await?;
        let formatted_edits = self.format_events(&edit_events).await?;
        let edits_by_id: HashMap<&str, Value> =
            edit_events.iter().map(|e| e.event_id.as_str()).zip(formatted_edits).collect();
        for (original, edit) in &latest_edit {
            if let Some(value) = edits_by_id.get(edit) {
                out.entry((*original).to_owned()).or_default().insert("m.replace".into(), value.clone());
            }
        }

        // Threads: count, latest reply, and whether the viewer took part.
        let summaries = self.storage.thread_summaries(&ids).await?;
        if !summaries.is_empty() {
            let roots: Vec<String> = summaries.iter().map(|s| s.root.clone()).collect();
            let replies = self.storage.relation_rows(&roots, "m.thread").await?;
            let latest_ids: Vec<String> = summaries
                .iter()
                .filter_map(|s| replies.iter().find(|r| r.relates_to == s.root && r.stream_ordering == s.latest))
                .map(|r| r.event_id.clone())
                .collect();
            let latest_events = self.storage.get_events(&latest_ids).await?;
            let latest_formatted = self.format_events(&latest_events).await?;
            let latest_by_id: HashMap<&str, Value> =
                latest_events.iter().map(|e| e.event_id.as_str()).zip(latest_formatted).collect();
            for summary in &summaries {
                let participated = replies.iter().any(|r| r.relates_to == summary.root && r.sender == viewer)
                    || originals.get(summary.root.as_str()).is_some_and(|e| e.sender == viewer);
                let latest = replies
                    .iter()
                    .find(|r| r.relates_to == summary.root && r.stream_ordering == summary.latest)
                    .and_then(|r| latest_by_id.get(r.event_id.as_str()).cloned());
                out.entry(summary.root.clone()).or_default().insert(
                    "m.thread".into(),
                    json!({ "latest_event": latest, "count": summary.count, "current_user_participated": participated }),
                );
            }
        }

        // References: the ids of the referring events.
        for row in self.storage.relation_rows(&ids, "m.reference").await? {
            let entry = out.entry(row.relates_to.clone()).or_default();
            let chunk = entry.entry("m.reference").or_insert_with(|| json!({ "chunk": [] }));
            if let Some(list) = chunk["chunk"].as_array_mut() {
                list.push(json!({ "event_id": row.event_id }));
            }
        }
        Ok(out.into_iter().map(|(k, v)| (k, Value::Object(v))).collect())
    }
}
