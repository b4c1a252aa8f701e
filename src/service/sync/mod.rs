//! GET /sync: what a client missed since its token, or a long-poll until
//! something arrives.

mod filter;
mod lazy_members;
mod token;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};

pub use filter::SyncFilter;
pub use lazy_members::LazyMembers;
pub use token::SyncToken;

use crate::error::Result;
use crate::service::Services;
use crate::service::e2ee::DeviceListDelta;
use crate::service::rooms::{Token, VisibilityCheck};
use crate::storage::{AccountDataRow, Direction, StoredEvent, UserMembership};

/// Joined rooms whose sections are built concurrently.
const ROOMS_AT_ONCE: usize = 8;
/// Members named in a room summary's `m.heroes`.
const HEROES: usize = 5;
/// Longest a client may make the server hold a request.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// State event types shown to invitees (the spec's recommended stripped state).
const STRIPPED_STATE: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

pub struct SyncRequest {
    /// The requesting device, whose own events carry their transaction ids.
    pub device_id: String,
    pub since: Option<SyncToken>,
    pub timeout: Duration,
    pub full_state: bool,
    /// Boxed: ~400 bytes that a long-poll would otherwise carry inline while it waits.
    pub filter: Box<SyncFilter>,
    /// `set_presence`: how this request marks the user (online when absent).
    pub set_presence: Option<crate::service::presence::State>,
}

/// How many /sync responses are built at once. One event in a large room wakes
/// every member's long-poll together; each response being built holds its
/// working memory (its rooms' futures, events, the JSON) while it waits for the
/// database or the CPU, so building all of them at once multiplied the memory by
/// the room's size without finishing any sooner on a few cores. The rest wait
/// their turn in order (a semaphore is fair), holding only their request.
pub struct BuildLimit(tokio::sync::Semaphore);

/// Responses built at once per core: enough to keep the cores busy while some
/// builds wait on the database.
const BUILDS_PER_CORE: u32 = 8;

impl BuildLimit {
    pub fn new(cores: u32) -> Self {
        Self(tokio::sync::Semaphore::new((cores.max(1) * BUILDS_PER_CORE) as usize))
    }

    async fn turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        // The semaphore is never closed.
        self.0.acquire().await.expect("the sync build semaphore is never closed")
    }
}

pub async fn sync(services: &Services, user_id: &str, request: SyncRequest) -> Result<Value> {
    // The steps before and after the wait are boxed: a future is as large as
    // its largest step, and a long-poll would hold that space while it waits.
    let _presence = Box::pin(services.presence.syncing(user_id, request.set_presence)).await?;
    if request.since.is_none() {
        services.lazy_members.reset(user_id, &request.device_id);
    }
    let handle = services.notifier.handle(user_id);
    let deadline = tokio::time::Instant::now() + request.timeout.min(MAX_TIMEOUT);
    let mut since = request.since;
    if let Some(token) = since {
        Box::pin(services.e2ee.acknowledge_to_device(user_id, &request.device_id, token.to_device)).await?;
    }
    loop {
        // Armed before looking, so a change between the look and the wait still wakes us.
        let notified = handle.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let now = current_token(services).max(since.unwrap_or_default());
        if since.is_none_or(|s| s.is_behind(&now)) || request.full_state {
            let (response, empty) = Box::pin(async {
                let _turn = services.sync_builds.turn().await;
                build(services, user_id, since, now, &request).await
            })
            .await?;
            if !empty || since.is_none() || request.full_state {
                return Ok(response);
            }
            // Nothing that concerns this user: wait from here.
            since = Some(now);
        }
        let _waiting = services.notifier.waiting();
        // A deadline already reached (`timeout=0`) answers at once: the timer
        // rounds deadlines up to its next millisecond tick, so waiting for one
        // that has passed still took ~1 ms.
        let expired = tokio::time::Instant::now() >= deadline;
        if expired || services.notifier.is_closing() || tokio::time::timeout_at(deadline, notified).await.is_err() {
            let keys = Box::pin(services.e2ee.key_counts(user_id, &request.device_id)).await?;
            return Ok(json!({
                "next_batch": since.unwrap_or(now).to_string(),
                "device_one_time_keys_count": keys.one_time,
                "device_unused_fallback_key_types": keys.unused_fallback,
            }));
        }
    }
}

fn current_token(services: &Services) -> SyncToken {
    SyncToken {
        events: services.rooms.timeline.ids().persisted(),
        account_data: services.account_data.position(),
        receipts: services.ephemeral.receipt_position(),
        typing: services.ephemeral.typing_position(),
        to_device: services.e2ee.to_device_position(),
        device_lists: services.e2ee.device_list_position(),
        presence: services.presence.position(),
    }
}

/// What every part of one response needs.
struct Pass<'a> {
    services: &'a Services,
    user_id: &'a str,
    since: Option<SyncToken>,
    now: SyncToken,
    request: &'a SyncRequest,
    /// The user's ignored users, read once when a room first needs them.
    ignored: tokio::sync::OnceCell<Arc<HashSet<String>>>,
}

impl Pass<'_> {
    async fn ignored(&self) -> Result<Arc<HashSet<String>>> {
        let read = || self.services.account_data.ignored_users(self.user_id);
        Ok(self.ignored.get_or_try_init(read).await?.clone())
    }

    async fn visibility(&self, membership: &UserMembership) -> Result<VisibilityCheck<'_>> {
        let current = Some(membership.membership.clone());
        Ok(VisibilityCheck::with_membership(&self.services.rooms, self.user_id, current, self.ignored().await?))
    }
}

/// A room's events in `(after, upto]`, newest first: from memory when it has them.
async fn room_events(
    services: &Services,
    room_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    if let Some(events) = services.rooms.timeline.recent.range(room_id, after, upto, limit as usize) {
        return Ok(events);
    }
    Ok(services.storage.room_events_in_range(room_id, after, upto, limit).await?)
}

/// Builds the response for `(since, now]`; the flag says whether it carries nothing.
async fn build(
    services: &Services,
    user_id: &str,
    since: Option<SyncToken>,
    now: SyncToken,
    request: &SyncRequest,
) -> Result<(Value, bool)> {
    let storage = &services.storage;
    let filter = &request.filter;
    let account_data_after = if request.full_state { 0 } else { since.map(|s| s.account_data).unwrap_or(0) };
    let mut account_data: HashMap<String, Vec<AccountDataRow>> = HashMap::new();
    for row in services.account_data.changes_since(user_id, account_data_after).await? {
        if row.stream_id <= now.account_data {
            account_data.entry(row.room_id.clone()).or_default().push(row);
        }
    }

    let pass = Pass { services, user_id, since, now, request, ignored: Default::default() };
    let mut join = Map::new();
    let mut invite = Map::new();
    let mut leave = Map::new();
    let mut knock = Map::new();
    let memberships = services
        .rooms
        .timeline
        .user_rooms
        .get_or_load(&user_id.to_owned(), || async {
            Ok::<_, crate::error::Error>(Arc::new(storage.user_memberships(user_id).await?))
        })
        .await?;
    let mut joined = Vec::new();
    for membership in memberships.iter() {
        if !filter.room_allowed(&membership.room_id) || membership.stream_ordering > now.events {
            continue;
        }
        let changed_since = since.is_none_or(|s| membership.stream_ordering > s.events);
        let room_account_data = account_data.remove(&membership.room_id).unwrap_or_default();
        match membership.membership.as_str() {
            "join" => joined.push((membership.clone(), room_account_data)),
            "invite" if changed_since => {
                invite.insert(
                    membership.room_id.clone(),
                    json!({ "invite_state": { "events": stripped_state(services, membership).await? } }),
                );
            }
            "knock" if changed_since => {
                knock.insert(
                    membership.room_id.clone(),
                    json!({ "knock_state": { "events": stripped_state(services, membership).await? } }),
                );
            }
            "leave" | "ban"
                if !membership.forgotten
                    && (since.is_some() && changed_since || since.is_none() && filter.include_leave) =>
            {
                leave.insert(membership.room_id.clone(), left_room(&pass, membership).await?);
            }
            _ => {}
        }
    }
    // Joined rooms are built a few at a time: each waits on the database for
    // part of its work, and the waits overlap.
    let mut rooms_built = futures_util::stream::iter(joined)
        .map(|(membership, room_account_data)| {
            let pass = &pass;
            async move {
                let room = joined_room(pass, &membership, room_account_data).await?;
                Ok::<_, crate::error::Error>((membership.room_id, room))
            }
        })
        .buffer_unordered(ROOMS_AT_ONCE);
    while let Some((room_id, room)) = rooms_built.try_next().await? {
        if let Some(room) = room {
            join.insert(room_id, room);
        }
    }

    let global: Vec<Value> = account_data
        .remove("")
        .unwrap_or_default()
        .iter()
        .filter(|row| filter.account_data_allowed(&row.data_type))
        .map(account_data_event)
        .collect();
    // End-to-end encryption: to-device messages, device lists, key counts.
    let e2ee = &services.e2ee;
    let to_device =
        e2ee.to_device_for_sync(user_id, &request.device_id, since.map_or(0, |s| s.to_device), now.to_device).await?;
    let device_lists = match since {
        Some(s) => {
            // Users join and leave rooms by membership events: none, nothing to look at.
            let events = if services.rooms.timeline.membership_changed_after(s.events) { s.events } else { now.events };
            e2ee.device_list_delta(user_id, (s.device_lists, now.device_lists), (events, now.events)).await?
        }
        None => DeviceListDelta::default(),
    };
    let next_batch = SyncToken { to_device: to_device.position, ..now };
    let presence = if filter.presence_allowed() {
        services.presence.events_for(user_id, since.map_or(0, |s| s.presence), now.presence).await?
    } else {
        Vec::new()
    };

    let empty = join.is_empty()
        && invite.is_empty()
        && leave.is_empty()
        && knock.is_empty()
        && global.is_empty()
        && to_device.events.is_empty()
        && device_lists.is_empty()
        && presence.is_empty();
    let mut rooms = Map::new();
    for (key, map) in [("join", join), ("invite", invite), ("leave", leave), ("knock", knock)] {
        if !map.is_empty() {
            rooms.insert(key.into(), Value::Object(map));
        }
    }
    let keys = e2ee.key_counts(user_id, &request.device_id).await?;
    let mut response = json!({
        "next_batch": next_batch.to_string(),
        "device_one_time_keys_count": keys.one_time,
        "device_unused_fallback_key_types": keys.unused_fallback,
    });
    if !presence.is_empty() {
        response["presence"] = json!({ "events": presence });
    }
    if !to_device.events.is_empty() {
        response["to_device"] = json!({ "events": to_device.events });
    }
    if !device_lists.is_empty() {
        response["device_lists"] = json!({ "changed": device_lists.changed, "left": device_lists.left });
    }
    if !rooms.is_empty() {
        response["rooms"] = Value::Object(rooms);
    }
    if !global.is_empty() {
        response["account_data"] = json!({ "events": global });
    }
    Ok((response, empty))
}

fn account_data_event(row: &AccountDataRow) -> Value {
    let content: Value = serde_json::from_str(&row.content).unwrap_or_else(|_| json!({}));
    json!({ "type": row.data_type, "content": content })
}

/// One joined room's section, or `None` when nothing changed in it.
async fn joined_room(
    pass: &Pass<'_>,
    membership: &UserMembership,
    account_data: Vec<AccountDataRow>,
) -> Result<Option<Value>> {
    let Pass { services, user_id, since, now, request, .. } = *pass;
    let rooms = &services.rooms;
    let storage = &services.storage;
    let filter = &request.filter;
    let room_id = &membership.room_id;
    let newly_joined = since.is_none_or(|s| membership.stream_ordering > s.events);
    let full = newly_joined || request.full_state;
    let after = if newly_joined { 0 } else { since.map(|s| s.events).unwrap_or(0) };
    let limit = filter.timeline_limit();
    // Most rooms of an incremental sync are quiet: skip them without a query.
    if let Some(s) = since
        && !full
        && account_data.is_empty()
        && !room_active_since(services, room_id, s).await?
    {
        return Ok(None);
    }

    // Read back from `now` until `limit` events pass visibility and the filter:
    // the limit counts returned events, not examined ones.
    // Built on first use: most rooms of an incremental sync have nothing new.
    let mut check: Option<VisibilityCheck<'_>> = None;
    let mut timeline = Vec::with_capacity(limit);
    let mut skipped_state = Vec::new();
    let mut cursor = now.events;
    let mut oldest_examined: Option<StoredEvent> = None;
    let batch_size = (limit as i64 * 2).max(20);
    // Whether events remain in the range before the oldest one looked at, when known.
    let mut more_before = None;
    loop {
        let batch = room_events(services, room_id, after, cursor, batch_size).await?;
        let exhausted = (batch.len() as i64) < batch_size;
        let count = batch.len();
        for (i, event) in batch.into_iter().enumerate() {
            cursor = event.stream_ordering - 1;
            oldest_examined = Some(event.clone());
            if check.is_none() {
                check = Some(pass.visibility(membership).await?);
            }
            let visible = check.as_mut().expect("built above").can_see(&event).await?;
            if visible && filter.timeline_allows(&event)? {
                timeline.push(event);
                if timeline.len() == limit {
                    if i + 1 < count {
                        more_before = Some(true);
                    }
                    break;
                }
            } else if event.state_key.is_some() {
                skipped_state.push(event);
            }
        }
        if exhausted && more_before.is_none() {
            more_before = Some(false);
        }
        if timeline.len() == limit || exhausted {
            break;
        }
    }
    timeline.reverse();
    let limited = match more_before {
        Some(known) => known,
        None => !room_events(services, room_id, after, cursor, 1).await?.is_empty(),
    };
    // Typing and receipts: what changed since the token, everything for a new room.
    let (typing_after, receipts_after) = match since {
        Some(s) if !full => (s.typing, s.receipts),
        _ => (0, 0),
    };
    let mut ephemeral = Vec::new();
    if let Some(typing) = services.ephemeral.typing_event(room_id, typing_after, now.typing) {
        ephemeral.push(typing);
    }
    if let Some(receipts) = services.ephemeral.receipt_event(room_id, user_id, receipts_after, now.receipts).await? {
        ephemeral.push(receipts);
    }
    if !full && timeline.is_empty() && skipped_state.is_empty() && account_data.is_empty() && ephemeral.is_empty() {
        return Ok(None);
    }
    let start = timeline.first().or(oldest_examined.as_ref()).cloned();
    let prev_batch = match &start {
        Some(first) => Token::of(first),
        None => latest_token(services, room_id, now.events).await?,
    };

    // State up to the start of the timeline...
    let mut latest: HashMap<(String, Option<String>), StoredEvent> = HashMap::new();
    if full {
        let group = match &start {
            // A message event carries the state it was sent in: the state before it.
            Some(first) if first.state_key.is_none() => first.state_group,
            Some(first) => {
                let before = storage
                    .room_events_page(room_id, (first.depth, first.stream_ordering), Direction::Backward, 1)
                    .await?;
                before.first().map(|e| e.state_group).unwrap_or(0)
            }
            None => storage
                .room_events_in_range(room_id, 0, now.events, 1)
                .await?
                .first()
                .map(|e| e.state_group)
                .unwrap_or(0),
        };
        let state = rooms.state.full_state(group).await?;
        for event in storage.get_events(&state.values().cloned().collect::<Vec<_>>()).await? {
            latest.insert((event.event_type.clone(), event.state_key.clone()), event);
        }
    } else if limited {
        let first = start.as_ref().map(|e| e.stream_ordering).unwrap_or(now.events + 1);
        for event in storage.room_state_events_in_range(room_id, after, first).await? {
            latest.insert((event.event_type.clone(), event.state_key.clone()), event);
        }
    }
    // ...plus state changes the timeline filter left out, so none is lost.
    skipped_state.sort_by_key(|e| e.stream_ordering);
    for event in skipped_state {
        let visible = match check.as_mut() {
            Some(check) => check.can_see(&event).await?,
            None => false,
        };
        if visible {
            latest.insert((event.event_type.clone(), event.state_key.clone()), event);
        }
    }
    let mut state_events: Vec<StoredEvent> = latest.into_values().collect();
    // Member counts and heroes change only by membership events in the range
    // (not by the members lazy loading adds below).
    let membership_changed = timeline.iter().chain(state_events.iter()).any(|e| e.event_type == "m.room.member");
    if filter.lazy_load_members {
        lazy_load_members(pass, room_id, since.filter(|_| !full), &timeline, &mut state_events).await?;
    }
    state_events.retain(|e| filter.state_allows(e));
    state_events.sort_by_key(|e| e.stream_ordering);

    let mut timeline_events = rooms.format_timeline(&timeline, user_id).await?;
    rooms.add_transaction_ids(&mut timeline_events, user_id, &request.device_id).await?;
    let mut room = json!({
        "timeline": {
            "events": filter.shape_events(timeline_events, &timeline),
            "limited": limited,
            "prev_batch": prev_batch.to_string(),
        },
        "state": { "events": filter.shape_events(rooms.format_events(&state_events).await?, &state_events) },
        "ephemeral": { "events": ephemeral },
        "account_data": { "events": account_data.iter().map(account_data_event).collect::<Vec<_>>() },
    });
    let counts = services.push.unread_counts(user_id, room_id, now.events, filter.unread_thread_notifications).await?;
    room["unread_notifications"] = count_json(counts.room);
    if !counts.threads.is_empty() {
        let threads: Map<String, Value> = counts.threads.into_iter().map(|(root, c)| (root, count_json(c))).collect();
        room["unread_thread_notifications"] = Value::Object(threads);
    }
    if full || membership_changed {
        room["summary"] = summary(services, room_id, user_id).await?;
    }
    Ok(Some(room))
}

/// Lazy-loaded members: the membership events of the timeline's senders (and the
/// user's own), each sent to a device once unless `include_redundant_members`.
/// `since` is the token unless the room is sent in full.
async fn lazy_load_members(
    pass: &Pass<'_>,
    room_id: &str,
    since: Option<SyncToken>,
    timeline: &[StoredEvent],
    state_events: &mut Vec<StoredEvent>,
) -> Result<()> {
    let Pass { services, user_id, now, request, .. } = *pass;
    let mut wanted: BTreeSet<&str> = timeline.iter().map(|e| e.sender.as_str()).collect();
    wanted.insert(user_id);
    state_events
        .retain(|e| e.event_type != "m.room.member" || e.state_key.as_deref().is_some_and(|k| wanted.contains(k)));
    let present: HashSet<String> =
        state_events.iter().filter(|e| e.event_type == "m.room.member").filter_map(|e| e.state_key.clone()).collect();
    let lazy = services.lazy_members.device(user_id, &request.device_id);
    // Members whose current event this device already has are left out (unless redundant ones are wanted).
    let skip_known = since.filter(|_| !request.filter.include_redundant_members);
    let known = |member: &str, event_id: &str| {
        skip_known.is_some_and(|since| lazy.known(since.events, room_id, member, event_id))
    };
    let mut missing = Vec::new();
    for member in wanted.iter().filter(|m| !present.contains(**m)) {
        // The members as of the timeline's end (state snapshots are cached in memory).
        let id = match timeline.last() {
            Some(last) => services.rooms.state.lookup(last.state_group, "m.room.member", member).await?,
            None => services.storage.current_state_event_id(room_id, "m.room.member", member).await?,
        };
        if let Some(id) = id.filter(|id| !known(member, id)) {
            missing.push(id);
        }
    }
    state_events.extend(services.rooms.timeline.stored_events(&missing).await?);
    state_events
        .retain(|e| e.event_type != "m.room.member" || !known(e.state_key.as_deref().unwrap_or(""), &e.event_id));
    let sent: Vec<(String, String)> = state_events
        .iter()
        .filter(|e| e.event_type == "m.room.member")
        .map(|e| (e.state_key.clone().unwrap_or_default(), e.event_id.clone()))
        .collect();
    lazy.record(now.events, room_id, &sent);
    Ok(())
}

/// Whether a room had events, receipts or typing changes after the token.
async fn room_active_since(services: &Services, room_id: &str, since: SyncToken) -> Result<bool> {
    let timeline = &services.rooms.timeline.activity;
    let latest_event = match timeline.get(room_id) {
        Some(position) => position,
        None => {
            let latest = services.storage.room_events_in_range(room_id, 0, i64::MAX, 1).await?;
            timeline.learn(room_id, latest.first().map_or(0, |e| e.stream_ordering))
        }
    };
    if latest_event > since.events {
        return Ok(true);
    }
    // Loaded whole at start: every room has a position.
    let latest_receipt = services.ephemeral.receipt_activity.get(room_id).unwrap_or(i64::MAX);
    if latest_receipt > since.receipts {
        return Ok(true);
    }
    Ok(services.ephemeral.typing_event(room_id, since.typing, i64::MAX).is_some())
}

fn count_json((notifications, highlights): (i64, i64)) -> Value {
    json!({ "notification_count": notifications, "highlight_count": highlights })
}

/// The position just after a room's latest event at or before `upto`.
async fn latest_token(services: &Services, room_id: &str, upto: i64) -> Result<Token> {
    let latest = services.storage.room_events_in_range(room_id, 0, upto, 1).await?;
    Ok(latest.first().map(Token::of).unwrap_or(Token { depth: 0, stream: 0 }))
}

/// `m.heroes` and member counts, for clients to name rooms without a name.
async fn summary(services: &Services, room_id: &str, user_id: &str) -> Result<Value> {
    let members = services.rooms.timeline.member_summary(room_id).await?;
    let heroes: Vec<&str> =
        members.heroes.iter().map(String::as_str).filter(|hero| *hero != user_id).take(HEROES).collect();
    Ok(json!({
        "m.heroes": heroes,
        "m.joined_member_count": members.joined,
        "m.invited_member_count": members.invited,
    }))
}

/// What an invitee or knocker may see of a room: a few state events, stripped.
async fn stripped_state(services: &Services, membership: &UserMembership) -> Result<Vec<Value>> {
    let storage = &services.storage;
    let mut ids = Vec::new();
    for kind in STRIPPED_STATE {
        if let Some(id) = storage.current_state_event_id(&membership.room_id, kind, "").await? {
            ids.push(id);
        }
    }
    ids.push(membership.event_id.clone());
    let mut events = storage.get_events(&ids).await?;
    // The inviter's own membership, so clients can show who invited.
    if let Some(invite) = events.iter().find(|e| e.event_id == membership.event_id)
        && let Some(id) = storage.current_state_event_id(&membership.room_id, "m.room.member", &invite.sender).await?
        && id != membership.event_id
    {
        events.extend(storage.get_events(&[id]).await?);
    }
    let mut stripped = Vec::with_capacity(events.len());
    for event in events {
        let content = crate::service::rooms::filter::content_of(&event)?;
        stripped.push(json!({
            "type": event.event_type,
            "state_key": event.state_key,
            "content": content,
            "sender": event.sender,
        }));
    }
    Ok(stripped)
}

/// A room the user left (or was removed from): the timeline up to the leave.
async fn left_room(pass: &Pass<'_>, membership: &UserMembership) -> Result<Value> {
    let Pass { services, user_id, since, request, .. } = *pass;
    let limit = request.filter.timeline_limit();
    let after = since.map(|s| s.events).unwrap_or(0);
    let mut events = services
        .storage
        .room_events_in_range(&membership.room_id, after, membership.stream_ordering, limit as i64 + 1)
        .await?;
    let limited = events.len() > limit;
    events.truncate(limit);
    events.reverse();
    let mut check = pass.visibility(membership).await?;
    let mut timeline = Vec::new();
    for event in &events {
        // The leave event itself is always shown: it tells the client why it is out.
        if event.event_id == membership.event_id || check.can_see(event).await? {
            timeline.push(event.clone());
        }
    }
    let prev_batch = events.first().map(Token::of).unwrap_or(Token { depth: 0, stream: 0 });
    Ok(json!({
        "timeline": {
            "events": request.filter.shape_events(services.rooms.format_timeline(&timeline, user_id).await?, &timeline),
            "limited": limited,
            "prev_batch": prev_batch.to_string(),
        },
        "state": { "events": [] },
        "account_data": { "events": [] },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, F: std::future::Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_waiting_sync_is_small() {
        // Held through a long-poll's whole wait (debug build, where the tests
        // run): 672 bytes now, 1,520 with the filter inline.
        let size =
            future_size(|services: &Services, user_id: &str, request: SyncRequest| sync(services, user_id, request));
        assert!(size < 900, "a waiting sync's future is {size} bytes");
        let size = std::mem::size_of::<SyncRequest>();
        assert!(size < 200, "SyncRequest is {size} bytes");
    }

    #[tokio::test]
    async fn builds_beyond_the_limit_wait_for_a_turn() {
        let limit = BuildLimit::new(1);
        let held: Vec<_> = futures_util::future::join_all((0..BUILDS_PER_CORE).map(|_| limit.turn())).await;
        let mut next = std::pin::pin!(limit.turn());
        assert!(futures_util::poll!(next.as_mut()).is_pending(), "a build past the limit started");
        drop(held);
        assert!(futures_util::poll!(next.as_mut()).is_ready(), "a released turn was not handed on");
    }
}
