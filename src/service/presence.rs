//! Presence: online / unavailable / offline, a status message, and when the
//! user was last active. Kept in memory, written through to the database when
//! the state changes (each change is a position in the presence stream), and
//! shown to the users who share a room with the user.
//!
//! A user is online while a client syncs with `set_presence=online` (the
//! default) or after setting it; idle after `idle_timeout` without activity;
//! offline once no client has synced for `offline_timeout`. With presence
//! switched off in the config, nothing here runs and nothing is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::service::notifier::Notifier;
use crate::service::now_ms;
use crate::service::stream::Stream;
use crate::storage::{PresenceRow, Storage};

/// A user counts as `currently_active` this long after their last activity.
const CURRENTLY_ACTIVE_MS: i64 = 60_000;
/// How often the timers (idle, offline) are checked.
const TICK: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Online,
    Unavailable,
    Offline,
}

impl State {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "online" => Ok(Self::Online),
            "unavailable" => Ok(Self::Unavailable),
            "offline" => Ok(Self::Offline),
            _ => Err(Error::invalid_param("presence must be online, unavailable or offline")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Unavailable => "unavailable",
            Self::Offline => "offline",
        }
    }
}

/// What is known of one user in memory.
#[derive(Debug, Clone)]
struct Entry {
    state: State,
    status_msg: Option<String>,
    last_active_ms: i64,
    /// Requests currently syncing (long-polls held).
    syncing: u32,
    /// When a client last synced or set presence: the offline timer runs from here.
    last_seen_ms: i64,
}

pub struct Presence {
    enabled: bool,
    idle_timeout_ms: i64,
    offline_timeout_ms: i64,
    storage: Arc<dyn Storage>,
    notifier: Arc<Notifier>,
    stream: Stream,
    users: Mutex<HashMap<String, Entry>>,
}

/// Held by a syncing request; tells presence when the request ends.
pub struct SyncGuard<'a> {
    presence: &'a Presence,
    user_id: Option<String>,
}

impl Drop for SyncGuard<'_> {
    fn drop(&mut self) {
        if let Some(user_id) = &self.user_id {
            let mut users = self.presence.users.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = users.get_mut(user_id) {
                entry.syncing = entry.syncing.saturating_sub(1);
                entry.last_seen_ms = now_ms();
            }
        }
    }
}

impl Presence {
    pub async fn new(config: &Config, storage: Arc<dyn Storage>, notifier: Arc<Notifier>) -> Result<Arc<Self>> {
        let enabled = config.presence.enabled;
        let position = if enabled { storage.max_presence_stream().await? } else { 0 };
        // Users stored as present were so when the server stopped: their timers
        // start again from now (they go offline unless a client comes back).
        let mut users = HashMap::new();
        if enabled {
            let now = now_ms();
            for row in storage.presence_since(0, position).await? {
                let state = State::parse(&row.state).unwrap_or(State::Offline);
                if state != State::Offline || row.status_msg.is_some() {
                    let entry = Entry {
                        state,
                        status_msg: row.status_msg,
                        last_active_ms: row.last_active_ts,
                        syncing: 0,
                        last_seen_ms: now,
                    };
                    users.insert(row.user_id, entry);
                }
            }
        }
        let presence = Arc::new(Self {
            enabled,
            idle_timeout_ms: config.presence.idle_timeout_secs as i64 * 1000,
            offline_timeout_ms: config.presence.offline_timeout_secs as i64 * 1000,
            storage,
            notifier,
            stream: Stream::new(position),
            users: Mutex::new(users),
        });
        if enabled {
            // The timer holds a weak reference: it ends with the service.
            let weak = Arc::downgrade(&presence);
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(TICK);
                loop {
                    ticks.tick().await;
                    let Some(presence) = weak.upgrade() else { break };
                    if let Err(e) = presence.run_timers(now_ms()).await {
                        tracing::warn!(error = %e, "presence timers failed");
                    }
                }
            });
        }
        Ok(presence)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn position(&self) -> i64 {
        self.stream.position()
    }

    /// `PUT /presence/{userId}/status`. A missing `status_msg` keeps the current one.
    pub async fn set(&self, user_id: &str, state: State, status_msg: Option<Option<String>>) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let now = now_ms();
        let update = {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            let entry = self.entry(&mut users, user_id, now);
            let before = (entry.state, entry.status_msg.clone());
            entry.state = state;
            if let Some(message) = status_msg {
                entry.status_msg = message;
            }
            entry.last_seen_ms = now;
            if state == State::Online {
                entry.last_active_ms = now;
            }
            (before != (entry.state, entry.status_msg.clone())).then(|| entry.clone())
        };
        match update {
            Some(entry) => self.publish(user_id, &entry).await,
            None => Ok(()),
        }
    }

    /// Records activity (sending an event): resets the idle timer, and brings
    /// an idle user back online.
    pub async fn active(&self, user_id: &str) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let now = now_ms();
        let update = {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            let entry = self.entry(&mut users, user_id, now);
            entry.last_active_ms = now;
            entry.last_seen_ms = now;
            (entry.state == State::Unavailable).then(|| {
                entry.state = State::Online;
                entry.clone()
            })
        };
        match update {
            Some(entry) => self.publish(user_id, &entry).await,
            None => Ok(()),
        }
    }

    /// A sync request starts: `set_presence` as the client asked (online when absent).
    pub async fn syncing(&self, user_id: &str, set_presence: Option<State>) -> Result<SyncGuard<'_>> {
        if !self.enabled {
            return Ok(SyncGuard { presence: self, user_id: None });
        }
        let now = now_ms();
        let update = {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            let entry = self.entry(&mut users, user_id, now);
            entry.syncing += 1;
            entry.last_seen_ms = now;
            match set_presence.unwrap_or(State::Online) {
                // Syncing does not count as activity: an online user still goes idle.
                State::Online if entry.state == State::Offline => {
                    entry.state = State::Online;
                    entry.last_active_ms = now;
                    Some(entry.clone())
                }
                State::Unavailable if entry.state != State::Unavailable => {
                    entry.state = State::Unavailable;
                    Some(entry.clone())
                }
                _ => None,
            }
        };
        let guard = SyncGuard { presence: self, user_id: Some(user_id.to_owned()) };
        if let Some(entry) = update {
            self.publish(user_id, &entry).await?;
        }
        Ok(guard)
    }

    /// The in-memory entry, created from the last stored state on first use.
    fn entry<'m>(&self, users: &'m mut HashMap<String, Entry>, user_id: &str, now: i64) -> &'m mut Entry {
        users.entry(user_id.to_owned()).or_insert_with(|| Entry {
            state: State::Offline,
            status_msg: None,
            last_active_ms: 0,
            syncing: 0,
            last_seen_ms: now,
        })
    }

    /// Stores a change at the next stream position and wakes those who see it.
    async fn publish(&self, user_id: &str, entry: &Entry) -> Result<()> {
        let storage = &self.storage;
        let row = |stream_id| PresenceRow {
            user_id: user_id.to_owned(),
            state: entry.state.as_str().to_owned(),
            status_msg: entry.status_msg.clone(),
            last_active_ts: entry.last_active_ms,
            stream_id,
        };
        self.stream.append(|position| async move { Ok(storage.put_presence(&row(position)).await?) }).await?;
        self.notifier.wake_user(user_id);
        for mate in self.storage.room_mates(user_id).await? {
            self.notifier.wake_user(&mate);
        }
        Ok(())
    }

    /// Idle and offline timers.
    async fn run_timers(&self, now: i64) -> Result<()> {
        let changed: Vec<(String, Entry)> = {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            let mut changed = Vec::new();
            for (user_id, entry) in users.iter_mut() {
                let next = if entry.state != State::Offline
                    && entry.syncing == 0
                    && now - entry.last_seen_ms > self.offline_timeout_ms
                {
                    State::Offline
                } else if entry.state == State::Online && now - entry.last_active_ms > self.idle_timeout_ms {
                    State::Unavailable
                } else {
                    continue;
                };
                entry.state = next;
                changed.push((user_id.clone(), entry.clone()));
            }
            // Offline users with nothing in flight need no memory.
            users.retain(|_, e| e.state != State::Offline || e.syncing > 0 || e.status_msg.is_some());
            changed
        };
        for (user_id, entry) in changed {
            self.publish(&user_id, &entry).await?;
        }
        Ok(())
    }

    /// The `m.presence` content of a user as others see it; `None` if never known.
    pub async fn content(&self, user_id: &str) -> Result<Option<Value>> {
        if !self.enabled {
            return Ok(None);
        }
        let live = self.users.lock().unwrap_or_else(|e| e.into_inner()).get(user_id).cloned();
        let row = match live {
            Some(entry) => PresenceRow {
                user_id: user_id.to_owned(),
                state: entry.state.as_str().to_owned(),
                status_msg: entry.status_msg,
                last_active_ts: entry.last_active_ms,
                stream_id: 0,
            },
            None => match self.storage.get_presence(user_id).await? {
                Some(row) => row,
                None => return Ok(None),
            },
        };
        Ok(Some(content_of(&row, now_ms())))
    }

    /// `m.presence` events for `/sync`: changes in `(after, upto]` of the user
    /// and of those sharing a room with them.
    pub async fn events_for(&self, user_id: &str, after: i64, upto: i64) -> Result<Vec<Value>> {
        if !self.enabled || upto <= after {
            return Ok(Vec::new());
        }
        let rows = self.storage.presence_since(after, upto).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let others: Vec<String> = rows.iter().map(|r| r.user_id.clone()).filter(|u| u != user_id).collect();
        let visible: std::collections::HashSet<String> =
            self.storage.users_sharing_a_room(user_id, &others).await?.into_iter().collect();
        let now = now_ms();
        Ok(rows
            .iter()
            .filter(|row| row.user_id == user_id || visible.contains(&row.user_id))
            .map(|row| json!({ "type": "m.presence", "sender": row.user_id, "content": content_of(row, now) }))
            .collect())
    }
}

fn content_of(row: &PresenceRow, now: i64) -> Value {
    let ago = (row.last_active_ts > 0).then(|| (now - row.last_active_ts).max(0));
    let currently_active = row.state == "online" && ago.is_some_and(|ago| ago < CURRENTLY_ACTIVE_MS);
    let mut content = json!({ "presence": row.state, "currently_active": currently_active });
    if let Some(ago) = ago {
        content["last_active_ago"] = json!(ago);
    }
    if let Some(message) = &row.status_msg {
        content["status_msg"] = json!(message);
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_fields() {
        let row = PresenceRow {
            user_id: "@a:x".into(),
            state: "online".into(),
            status_msg: Some("hi".into()),
            last_active_ts: 1_000,
            stream_id: 1,
        };
        let content = content_of(&row, 3_000);
        assert_eq!(
            content,
            json!({"presence": "online", "last_active_ago": 2000, "currently_active": true, "status_msg": "hi"})
        );
        let idle = PresenceRow { state: "unavailable".into(), status_msg: None, ..row };
        assert_eq!(content_of(&idle, 3_000)["currently_active"], false);
        assert!(State::parse("away").is_err());
        assert_eq!(State::parse("unavailable").unwrap(), State::Unavailable);
    }
}
