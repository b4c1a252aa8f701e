//! `GET /sync`: initial and incremental sync, long-polling, gaps and
//! `prev_batch`, invites/joins/leaves, account data, filters, errors,
//! transaction ids and tokens across a restart.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use complement_tests::client::new_txn_id;
use complement_tests::sync::{SYNC, next_batch, since, sync};
use complement_tests::{Client, Resp, TestServer, assert_err, assert_ok, enc};
use serde_json::{Value, json};

/// `GET /sync?{query}`; the raw response.
async fn sync_raw(client: &Client, query: &str) -> Resp {
    client.get(&format!("{SYNC}?{query}")).await
}

/// `&filter=<json>` (encoded).
fn filter_param(filter: &Value) -> String {
    format!("&filter={}", enc(&filter.to_string()))
}

/// `rooms.<section>.<room>`, if present.
fn room_in<'a>(body: &'a Value, section: &str, room: &str) -> Option<&'a Value> {
    body["rooms"][section].get(room)
}

/// `rooms.join.<room>`; panics when absent.
#[track_caller]
fn joined<'a>(body: &'a Value, room: &str) -> &'a Value {
    room_in(body, "join", room).unwrap_or_else(|| panic!("room {room} not in rooms.join: {body}"))
}

/// An array field (absent = empty).
fn arr(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["event_id"].as_str().unwrap_or_else(|| panic!("no event_id in {e}")).to_owned()).collect()
}

/// The timeline events of a joined/left room.
fn timeline(room: &Value) -> Vec<Value> {
    arr(&room["timeline"]["events"])
}

/// The state events of a joined/left room.
fn state(room: &Value) -> Vec<Value> {
    arr(&room["state"]["events"])
}

/// The state event of `event_type`/`state_key` in `events`, if any.
fn find_state<'a>(events: &'a [Value], event_type: &str, state_key: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["type"] == json!(event_type) && e["state_key"] == json!(state_key))
}

/// The state keys of the `m.room.member` events in `events`.
fn member_keys(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .filter(|e| e["type"] == json!("m.room.member"))
        .map(|e| e["state_key"].as_str().expect("state_key").to_owned())
        .collect()
}

/// True when no room section has any room.
fn no_rooms(body: &Value) -> bool {
    ["join", "invite", "leave", "knock"].iter().all(|s| body["rooms"][s].as_object().is_none_or(|m| m.is_empty()))
}

/// The same user and device on a restarted server.
fn rebind(server: &TestServer, client: &Client) -> Client {
    Client { base: server.base_url().to_owned(), http: server.client().http, ..client.clone() }
}

/// `POST /rooms/{room}/messages?dir=b` from `from` until no `end`; all events, newest first.
async fn page_back(client: &Client, room: &str, from: &str, limit: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from = from.to_owned();
    for _ in 0..50 {
        let body = client.messages(room, &format!("dir=b&limit={limit}&from={}", enc(&from))).await;
        let chunk = arr(&body["chunk"]);
        events.extend(chunk.iter().cloned());
        match body["end"].as_str() {
            Some(end) if !chunk.is_empty() => {
                assert_ne!(end, from, "/messages end token did not advance: {body}");
                from = end.to_owned();
            }
            _ => return events,
        }
    }
    panic!("/messages did not reach the start of {room} within 50 pages");
}

#[track_caller]
fn assert_no_duplicates(list: &[String], what: &str) {
    let set: HashSet<&String> = list.iter().collect();
    assert_eq!(set.len(), list.len(), "duplicate events in {what}: {list:?}");
}

// 1. Initial sync.
#[tokio::test]
async fn initial_sync_has_state_latest_timeline_and_a_usable_prev_batch() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat", "name": "Sync Room" })).await;
    bob.join(&room).await;
    let mut sent = Vec::new();
    for i in 0..15 {
        sent.push(alice.send_text(&room, &format!("m{i}")).await);
    }
    // An unnamed room, for m.heroes.
    let unnamed = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&unnamed).await;

    let body =
        sync(&alice, &format!("timeout=0{}", filter_param(&json!({ "room": { "timeline": { "limit": 5 } } })))).await;
    let r = joined(&body, &room);
    let tl = timeline(r);
    assert_eq!(ids(&tl), sent[10..].to_vec(), "timeline must be the 5 newest events, oldest first: {r}");
    assert_eq!(r["timeline"]["limited"], json!(true), "more than 5 events exist: {r}");
    let st = state(r);
    let create = find_state(&st, "m.room.create", "").unwrap_or_else(|| panic!("no m.room.create in state: {r}"));
    assert_eq!(create["sender"], json!(alice.user_id), "{create}");
    let name = find_state(&st, "m.room.name", "").unwrap_or_else(|| panic!("no m.room.name in state: {r}"));
    assert_eq!(name["content"]["name"], json!("Sync Room"));
    assert!(find_state(&st, "m.room.power_levels", "").is_some(), "no power levels in state: {r}");
    assert!(find_state(&st, "m.room.join_rules", "").is_some(), "no join rules in state: {r}");
    for user in [&alice.user_id, &bob.user_id] {
        let member = find_state(&st, "m.room.member", user).unwrap_or_else(|| panic!("no member {user}: {r}"));
        assert_eq!(member["content"]["membership"], json!("join"), "{member}");
    }
    // State is the state at the start of the timeline: none of the timeline events repeated.
    let st_ids: HashSet<String> = ids(&st).into_iter().collect();
    assert!(ids(&tl).iter().all(|id| !st_ids.contains(id)), "state overlaps timeline: {r}");
    for ev in st.iter().chain(tl.iter()) {
        assert!(ev["room_id"].is_null() || ev["room_id"] == json!(room), "room_id in sync events must match: {ev}");
        assert!(ev["origin_server_ts"].is_u64() && ev["sender"].is_string(), "client event fields: {ev}");
    }
    assert_eq!(r["summary"]["m.joined_member_count"], json!(2), "summary: {r}");
    let u = joined(&body, &unnamed);
    assert_eq!(u["summary"]["m.joined_member_count"], json!(2), "summary: {u}");
    assert_eq!(u["summary"]["m.heroes"], json!([bob.user_id]), "heroes of an unnamed room: {u}");

    // prev_batch continues exactly before the timeline.
    let prev = r["timeline"]["prev_batch"].as_str().unwrap_or_else(|| panic!("no prev_batch: {r}"));
    let before = page_back(&alice, &room, prev, 7).await;
    let before_ids = ids(&before);
    assert_eq!(before_ids.first(), Some(&sent[9]), "the first event before the timeline must be m9: {before_ids:?}");
    let mut combined: Vec<String> = tl.iter().rev().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
    combined.extend(before_ids);
    assert_no_duplicates(&combined, "timeline + /messages from prev_batch");
    let full = ids(&alice.paginate_all(&room, "b", 100, None, 10).await);
    assert_eq!(combined, full, "timeline + history before prev_batch must be the whole room, newest first");
}

// 2. Incremental sync.
#[tokio::test]
async fn incremental_sync_returns_exactly_the_new_events_and_tokens_are_stable() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    alice.send_text(&room, "before").await;
    let t0 = next_batch(&sync(&alice, "timeout=0").await);

    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(bob.send_text(&room, &format!("new{i}")).await);
    }
    let body = sync(&alice, &since(&t0, 0)).await;
    let r = joined(&body, &room);
    assert_eq!(ids(&timeline(r)), sent, "exactly the three new events: {r}");
    assert_eq!(r["timeline"]["limited"], json!(false), "{r}");
    assert!(state(r).is_empty(), "no state changed since t0: {r}");
    let t1 = next_batch(&body);
    assert_ne!(t1, t0, "next_batch must advance after new events");

    // Nothing new.
    let empty = sync(&alice, &since(&t1, 0)).await;
    assert!(no_rooms(&empty), "no rooms expected with nothing new: {empty}");
    let t2 = next_batch(&empty);

    // The same since twice, concurrently, gives the same events.
    let more = vec![bob.send_text(&room, "c1").await, bob.send_text(&room, "c2").await];
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let alice = alice.clone();
            let q = since(&t2, 0);
            tokio::spawn(async move { sync(&alice, &q).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("sync task"));
    }
    for res in &results {
        assert_eq!(ids(&timeline(joined(res, &room))), more, "concurrent sync since t2: {res}");
    }
    assert_eq!(next_batch(&results[0]), next_batch(&results[1]), "same position, same next_batch");
    // And once more later, still the same.
    let again = sync(&alice, &since(&t2, 0)).await;
    assert_eq!(ids(&timeline(joined(&again, &room))), more, "repeated sync since t2: {again}");
    // An old token still includes everything after it.
    let from_t0 = sync(&alice, &since(&t0, 0)).await;
    let all: Vec<String> = sent.iter().chain(more.iter()).cloned().collect();
    assert_eq!(ids(&timeline(joined(&from_t0, &room))), all, "sync since t0: {from_t0}");
}

// 3. Long-polling.
#[tokio::test]
async fn long_poll_wakes_on_new_events_and_times_out_otherwise() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let carol = server.register("carol", "password-c").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let t0 = next_batch(&sync(&alice, "timeout=0").await);

    // Wakes up quickly on a message.
    let poll = {
        let alice = alice.clone();
        let q = since(&t0, 10_000);
        tokio::spawn(async move {
            let body = sync(&alice, &q).await;
            (body, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "a long-poll with nothing new must not return at once");
    let sent_at = Instant::now();
    let event = bob.send_text(&room, "wake up").await;
    let (body, returned_at) = poll.await.expect("poll task");
    let latency = returned_at.saturating_duration_since(sent_at);
    assert!(latency < Duration::from_secs(1), "long-poll returned {latency:?} after the send");
    assert_eq!(ids(&timeline(joined(&body, &room))), vec![event.clone()], "{body}");
    let t1 = next_batch(&body);

    // Nothing happening: returns after the timeout, with no rooms.
    let start = Instant::now();
    let body = sync(&alice, &since(&t1, 300)).await;
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "returned after {elapsed:?}, before timeout=300");
    assert!(elapsed < Duration::from_secs(5), "returned after {elapsed:?}");
    assert!(no_rooms(&body), "{body}");

    // Carol is in no room: bob's messages must not wake her.
    let tc = next_batch(&sync(&carol, "timeout=0").await);
    let poll = {
        let carol = carol.clone();
        let q = since(&tc, 1000);
        tokio::spawn(async move {
            let start = Instant::now();
            let body = sync(&carol, &q).await;
            (body, start.elapsed())
        })
    };
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        bob.send_text(&room, &format!("not for carol {i}")).await;
    }
    let (body, elapsed) = poll.await.expect("poll task");
    assert!(elapsed >= Duration::from_millis(1000), "carol's long-poll returned after {elapsed:?}: {body}");
    assert!(no_rooms(&body), "carol must see no rooms: {body}");
}

// 4. Reconnect after a gap.
#[tokio::test]
async fn reconnect_after_many_events_is_limited_and_prev_batch_fills_the_gap() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let t0 = next_batch(&sync(&alice, "timeout=0").await);

    let mut sent = Vec::new();
    for i in 0..60 {
        sent.push(bob.send_text(&room, &format!("offline {i}")).await);
    }
    let body =
        sync(&alice, &(since(&t0, 0) + &filter_param(&json!({ "room": { "timeline": { "limit": 10 } } })))).await;
    let r = joined(&body, &room);
    let tl = ids(&timeline(r));
    assert_eq!(r["timeline"]["limited"], json!(true), "60 events with limit 10: {r}");
    assert_eq!(tl, sent[50..].to_vec(), "the 10 newest events: {r}");

    let prev = r["timeline"]["prev_batch"].as_str().unwrap_or_else(|| panic!("no prev_batch: {r}"));
    let before = ids(&page_back(&alice, &room, prev, 20).await);
    assert_eq!(before.first(), Some(&sent[49]), "first event before the timeline: {before:?}");
    let mut combined: Vec<String> = before.iter().rev().cloned().collect();
    combined.extend(tl);
    assert_no_duplicates(&combined, "history before prev_batch + timeline");
    let sent_set: HashSet<&String> = sent.iter().collect();
    let messages: Vec<String> = combined.iter().filter(|id| sent_set.contains(id)).cloned().collect();
    assert_eq!(messages, sent, "all 60 messages in order, no gap");
    // The gap must be fully covered: the events before the first message are the room's start.
    let full: Vec<String> = ids(&alice.paginate_all(&room, "b", 100, None, 10).await).into_iter().rev().collect();
    assert_eq!(combined, full, "prev_batch history + timeline must equal the room's whole history");
}

// 5. Invite, join, kick, leave, ban.
#[tokio::test]
async fn membership_changes_move_rooms_between_sections() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "private_chat", "name": "Secret" })).await;
    let mut tb = next_batch(&sync(&bob, "timeout=0").await);

    alice.invite(&room, &bob.user_id).await;
    let body = sync(&bob, &since(&tb, 0)).await;
    let inv = room_in(&body, "invite", &room).unwrap_or_else(|| panic!("no rooms.invite.{room}: {body}"));
    let invite_state = arr(&inv["invite_state"]["events"]);
    let own = find_state(&invite_state, "m.room.member", &bob.user_id)
        .unwrap_or_else(|| panic!("no invite member event in invite_state: {inv}"));
    assert_eq!(own["content"]["membership"], json!("invite"), "{own}");
    assert_eq!(own["sender"], json!(alice.user_id), "{own}");
    let inviter = find_state(&invite_state, "m.room.member", &alice.user_id)
        .unwrap_or_else(|| panic!("no inviter member event in invite_state: {inv}"));
    assert_eq!(inviter["content"]["membership"], json!("join"), "{inviter}");
    let name = find_state(&invite_state, "m.room.name", "").unwrap_or_else(|| panic!("no m.room.name: {inv}"));
    assert_eq!(name["content"]["name"], json!("Secret"));
    for ev in &invite_state {
        assert!(ev["sender"].is_string() && ev["content"].is_object() && ev["state_key"].is_string(), "{ev}");
    }
    assert!(room_in(&body, "join", &room).is_none(), "invited, not joined: {body}");
    // Also in an initial sync.
    let initial = sync(&bob, "timeout=0").await;
    assert!(room_in(&initial, "invite", &room).is_some(), "initial sync must list the invite: {initial}");
    tb = next_batch(&body);

    // Join.
    bob.join(&room).await;
    let body = sync(&bob, &since(&tb, 0)).await;
    let r = joined(&body, &room);
    assert!(room_in(&body, "invite", &room).is_none(), "no longer invited: {body}");
    let (r_tl, r_st) = (timeline(r), state(r));
    // The timeline may also show history (e.g. the invite); bob's newest member event is the join.
    let join_ev = r_tl
        .iter()
        .rev()
        .find(|e| e["type"] == json!("m.room.member") && e["state_key"] == json!(bob.user_id))
        .or_else(|| find_state(&r_st, "m.room.member", &bob.user_id))
        .unwrap_or_else(|| panic!("bob's join must be in the joined room: {r}"));
    assert_eq!(join_ev["content"]["membership"], json!("join"));
    let has_create = |events: &[Value]| find_state(events, "m.room.create", "").is_some();
    assert!(has_create(&r_st) || has_create(&r_tl), "a newly joined room must carry its full state: {r}");
    tb = next_batch(&body);

    // Kick.
    alice.send_text(&room, "before kick").await;
    let (status, resp) = alice.membership_raw(&room, "kick", &bob.user_id, Some("bye")).await;
    assert_eq!(status.as_u16(), 200, "kick: {resp}");
    let body = sync(&bob, &since(&tb, 0)).await;
    let left = room_in(&body, "leave", &room).unwrap_or_else(|| panic!("kicked room not in rooms.leave: {body}"));
    assert!(room_in(&body, "join", &room).is_none(), "{body}");
    let last = timeline(left).last().cloned().unwrap_or_else(|| panic!("empty leave timeline: {left}"));
    assert_eq!(
        (
            &last["type"],
            &last["state_key"],
            &last["sender"],
            &last["content"]["membership"],
            &last["content"]["reason"]
        ),
        (&json!("m.room.member"), &json!(bob.user_id), &json!(alice.user_id), &json!("leave"), &json!("bye")),
        "the kick must be the last timeline event: {left}"
    );
    assert!(
        timeline(left).iter().any(|e| e["content"]["body"] == json!("before kick")),
        "events before the kick belong in the leave timeline: {left}"
    );
    tb = next_batch(&body);
    // Later events in the room are not sent to bob.
    alice.send_text(&room, "after kick").await;
    let body = sync(&bob, &since(&tb, 0)).await;
    assert!(no_rooms(&body), "bob must not see events after his kick: {body}");
    tb = next_batch(&body);

    // Re-invite, join, leave voluntarily.
    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;
    let body = sync(&bob, &since(&tb, 0)).await;
    assert!(room_in(&body, "join", &room).is_some(), "rejoined: {body}");
    tb = next_batch(&body);
    bob.leave(&room).await;
    let body = sync(&bob, &since(&tb, 0)).await;
    let left = room_in(&body, "leave", &room).unwrap_or_else(|| panic!("left room not in rooms.leave: {body}"));
    let last = timeline(left).last().cloned().unwrap_or_else(|| panic!("empty leave timeline: {left}"));
    assert_eq!(
        (&last["type"], &last["state_key"], &last["sender"], &last["content"]["membership"]),
        (&json!("m.room.member"), &json!(bob.user_id), &json!(bob.user_id), &json!("leave")),
        "bob's leave must be the last timeline event: {left}"
    );
    assert!(room_in(&body, "join", &room).is_none(), "{body}");
    tb = next_batch(&body);

    // Ban in a public room.
    let public = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&public).await;
    let body = sync(&bob, &since(&tb, 0)).await;
    tb = next_batch(&body);
    let (status, resp) = alice.membership_raw(&public, "ban", &bob.user_id, None).await;
    assert_eq!(status.as_u16(), 200, "ban: {resp}");
    let body = sync(&bob, &since(&tb, 0)).await;
    let left = room_in(&body, "leave", &public).unwrap_or_else(|| panic!("banned room not in rooms.leave: {body}"));
    let last = timeline(left).last().cloned().unwrap_or_else(|| panic!("empty leave timeline: {left}"));
    assert_eq!(
        (&last["type"], &last["state_key"], &last["content"]["membership"]),
        (&json!("m.room.member"), &json!(bob.user_id), &json!("ban")),
        "the ban must be the last timeline event: {left}"
    );
}

// 6. Account data.
#[tokio::test]
async fn account_data_changes_appear_in_sync_and_wake_long_polls() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({})).await;
    let t0 = next_batch(&sync(&alice, "timeout=0").await);
    let user = enc(&alice.user_id);

    let direct = json!({ "@bob:localhost": [room] });
    assert_ok(alice.put(&format!("/_matrix/client/v3/user/{user}/account_data/m.direct"), direct.clone()).await);
    let body = sync(&alice, &since(&t0, 0)).await;
    let global = arr(&body["account_data"]["events"]);
    let ev = global.iter().find(|e| e["type"] == json!("m.direct")).unwrap_or_else(|| panic!("no m.direct: {body}"));
    assert_eq!(ev["content"], direct);
    let t1 = next_batch(&body);
    let body = sync(&alice, &since(&t1, 0)).await;
    assert!(arr(&body["account_data"]["events"]).is_empty(), "unchanged account data must not repeat: {body}");
    assert!(no_rooms(&body), "{body}");

    let room_path = format!("/_matrix/client/v3/user/{user}/rooms/{}/account_data/x.y", enc(&room));
    assert_ok(alice.put(&room_path, json!({ "a": 1 })).await);
    let body = sync(&alice, &since(&t1, 0)).await;
    let r = joined(&body, &room);
    let ev = arr(&r["account_data"]["events"])
        .into_iter()
        .find(|e| e["type"] == json!("x.y"))
        .unwrap_or_else(|| panic!("no x.y in room account data: {r}"));
    assert_eq!(ev["content"], json!({ "a": 1 }));
    assert!(
        arr(&body["account_data"]["events"]).iter().all(|e| e["type"] != json!("x.y")),
        "room account data must not be global: {body}"
    );
    let mut token = next_batch(&body);

    // Both kinds wake a long-poll.
    for (path, content) in [
        (format!("/_matrix/client/v3/user/{user}/account_data/x.global"), json!({ "g": true })),
        (room_path.clone(), json!({ "a": 2 })),
    ] {
        let poll = {
            let alice = alice.clone();
            let q = since(&token, 10_000);
            tokio::spawn(async move {
                let body = sync(&alice, &q).await;
                (body, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!poll.is_finished(), "long-poll returned before the account data change");
        let put_at = Instant::now();
        assert_ok(alice.put(&path, content.clone()).await);
        let (body, returned_at) = poll.await.expect("poll task");
        let latency = returned_at.saturating_duration_since(put_at);
        assert!(latency < Duration::from_secs(1), "{path}: long-poll returned {latency:?} after the PUT");
        let events = if path.contains("/rooms/") {
            arr(&joined(&body, &room)["account_data"]["events"])
        } else {
            arr(&body["account_data"]["events"])
        };
        assert!(events.iter().any(|e| e["content"] == content), "{path}: {content} not in {body}");
        token = next_batch(&body);
    }
}

// 7. Filters.

/// A server with alice (creator), carol, dave and bob in a public room; bob
/// sends three messages, then alice sets the topic. Alice is also alone in a
/// second room.
struct FilterRoom {
    _server: TestServer,
    alice: Client,
    bob: Client,
    carol: Client,
    dave: Client,
    room: String,
    other: String,
    messages: Vec<String>,
    topic: String,
}

async fn filter_room() -> FilterRoom {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let carol = server.register("carol", "password-c").await;
    let dave = server.register("dave", "password-d").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    for c in [&carol, &dave, &bob] {
        c.join(&room).await;
    }
    let mut messages = Vec::new();
    for text in ["one", "two", "three"] {
        messages.push(bob.send_text(&room, text).await);
    }
    let topic = alice.send_state(&room, "m.room.topic", "", json!({ "topic": "t" })).await;
    let other = alice.create_room(json!({})).await;
    FilterRoom { _server: server, alice, bob, carol, dave, room, other, messages, topic }
}

#[tokio::test]
async fn filter_timeline_limit_applies_after_types_stored_and_inline() {
    let f = filter_room().await;
    let def = json!({ "room": { "timeline": { "limit": 1, "types": ["m.room.message"] } } });
    let created = assert_ok(
        f.alice.post(&format!("/_matrix/client/v3/user/{}/filter", enc(&f.alice.user_id)), def.clone()).await,
    );
    let filter_id = created["filter_id"].as_str().unwrap_or_else(|| panic!("no filter_id: {created}")).to_owned();
    let stored = sync(&f.alice, &format!("timeout=0&filter={}", enc(&filter_id))).await;
    let inline = sync(&f.alice, &format!("timeout=0{}", filter_param(&def))).await;
    for (kind, body) in [("stored", &stored), ("inline", &inline)] {
        let r = joined(body, &f.room);
        assert_eq!(
            ids(&timeline(r)),
            vec![f.messages[2].clone()],
            "{kind} filter limit=1, types=[m.room.message]: {r}"
        );
        assert_eq!(r["timeline"]["limited"], json!(true), "{r}");
    }
    let topic_only = json!({ "room": { "timeline": { "limit": 1, "types": ["m.room.topic"] } } });
    let body = sync(&f.alice, &format!("timeout=0{}", filter_param(&topic_only))).await;
    assert_eq!(ids(&timeline(joined(&body, &f.room))), vec![f.topic.clone()], "{body}");
}

#[tokio::test]
async fn filter_timeline_not_types_and_senders() {
    let f = filter_room().await;
    // Limit 2 without topics: the last two messages (the topic is newer but excluded).
    let not_types = json!({ "room": { "timeline": { "limit": 2, "not_types": ["m.room.topic"] } } });
    let body = sync(&f.alice, &format!("timeout=0{}", filter_param(&not_types))).await;
    assert_eq!(ids(&timeline(joined(&body, &f.room))), f.messages[1..].to_vec(), "not_types: {body}");
    let senders = json!({ "room": { "timeline": { "limit": 3, "senders": [f.bob.user_id] } } });
    let body = sync(&f.alice, &format!("timeout=0{}", filter_param(&senders))).await;
    assert_eq!(ids(&timeline(joined(&body, &f.room))), f.messages, "senders=[bob]: {body}");
    // The topic is newest overall, so it is the last event whatever the filter drops before it.
    let everything = json!({ "room": { "timeline": { "limit": 1 } } });
    let body = sync(&f.alice, &format!("timeout=0{}", filter_param(&everything))).await;
    assert_eq!(ids(&timeline(joined(&body, &f.room))), vec![f.topic.clone()], "limit=1: {body}");
}

#[tokio::test]
async fn filtered_out_state_events_still_reach_the_state_section() {
    let f = filter_room().await;
    // The topic (the newest event) is filtered out of the timeline; the client must still learn
    // the current state. sync.yaml's "state up to the start of the timeline" is ambiguous here;
    // Synapse treats the omission as a defect (element-hq/synapse#16928).
    let def = json!({ "room": { "timeline": { "limit": 3, "types": ["m.room.message"] } } });
    let body = sync(&f.alice, &format!("timeout=0{}", filter_param(&def))).await;
    let r = joined(&body, &f.room);
    let st = state(r);
    let topic = find_state(&st, "m.room.topic", "")
        .unwrap_or_else(|| panic!("the current m.room.topic is in neither timeline nor state: {r}"));
    assert_eq!(topic["event_id"], json!(f.topic), "{topic}");
}

#[tokio::test]
async fn filter_lazy_load_members_only_includes_timeline_senders() {
    let f = filter_room().await;
    // The 4 newest events: bob's three messages and alice's topic.
    let lazy = json!({ "room": { "state": { "lazy_load_members": true }, "timeline": { "limit": 4 } } });
    let body = sync(&f.alice, &format!("timeout=0{}", filter_param(&lazy))).await;
    let r = joined(&body, &f.room);
    let mut expected = f.messages.clone();
    expected.push(f.topic.clone());
    assert_eq!(ids(&timeline(r)), expected, "{r}");
    let members = member_keys(&state(r));
    for sender in [&f.bob.user_id, &f.alice.user_id] {
        assert!(members.contains(sender), "{sender} sent a timeline event; its member event is needed: {members:?}");
    }
    assert!(
        !members.contains(&f.carol.user_id) && !members.contains(&f.dave.user_id),
        "lazy-loading must leave out members who sent nothing in the timeline: {members:?}"
    );
    assert!(find_state(&state(r), "m.room.create", "").is_some(), "non-member state stays: {r}");
    // Without lazy-loading, everyone is there (control).
    let eager = json!({ "room": { "timeline": { "limit": 4 } } });
    let body = sync(&f.alice, &format!("timeout=0{}", filter_param(&eager))).await;
    let members = member_keys(&state(joined(&body, &f.room)));
    for u in [&f.alice.user_id, &f.bob.user_id, &f.carol.user_id, &f.dave.user_id] {
        assert!(members.contains(u), "{u} missing without lazy-loading: {members:?}");
    }
}

#[tokio::test]
async fn filter_rooms_and_not_rooms() {
    let f = filter_room().await;
    let (room, other) = (&f.room, &f.other);
    let body = sync(&f.alice, &format!("timeout=0{}", filter_param(&json!({ "room": { "not_rooms": [room] } })))).await;
    assert!(room_in(&body, "join", room).is_none(), "not_rooms must hide the room: {body}");
    assert!(room_in(&body, "join", other).is_some(), "{body}");
    let body = sync(&f.alice, &format!("timeout=0{}", filter_param(&json!({ "room": { "rooms": [other] } })))).await;
    assert!(room_in(&body, "join", room).is_none(), "rooms must restrict to the listed rooms: {body}");
    assert!(room_in(&body, "join", other).is_some(), "{body}");
    // Incremental: a message in a hidden room does not show up (nor wake a long-poll early).
    let t = next_batch(&body);
    f.bob.send_text(room, "hidden").await;
    let start = Instant::now();
    let q = format!("{}{}", since(&t, 500), filter_param(&json!({ "room": { "not_rooms": [room] } })));
    let body = sync(&f.alice, &q).await;
    assert!(no_rooms(&body), "a not_rooms room must not appear incrementally: {body}");
    assert!(start.elapsed() >= Duration::from_millis(500), "returned after {:?}: {body}", start.elapsed());
}

// 8. Errors.
#[tokio::test]
async fn malformed_parameters_are_rejected() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    for bad in ["garbage", "s", "sX"] {
        assert_err(&sync_raw(&alice, &format!("since={bad}")).await, 400, "M_INVALID_PARAM");
    }
    assert_err(&sync_raw(&alice, "set_presence=bogus").await, 400, "M_INVALID_PARAM");
    sync(&alice, "set_presence=online&timeout=0").await;

    // Filters that are not JSON or are malformed: 400 (the spec names no code for /sync).
    // (A value not starting with `{` is a filter id, see the `filter` parameter.)
    for bad in ["{not json", r#"{"room":{"timeline":{"limit":"ten"}}}"#] {
        let (status, body) = sync_raw(&alice, &format!("filter={}", enc(bad))).await;
        assert_eq!(status.as_u16(), 400, "filter={bad}: {body}");
        assert!(
            matches!(body["errcode"].as_str(), Some("M_BAD_JSON" | "M_NOT_JSON" | "M_INVALID_PARAM")),
            "filter={bad}: {body}"
        );
    }
    // An unknown filter id, and another user's filter id.
    let resp = sync_raw(&alice, "filter=987654").await;
    assert_err(&resp, 404, "M_NOT_FOUND");
    let created =
        assert_ok(bob.post(&format!("/_matrix/client/v3/user/{}/filter", enc(&bob.user_id)), json!({})).await);
    let bobs = created["filter_id"].as_str().expect("filter_id");
    let (status, body) = sync_raw(&alice, &format!("filter={}", enc(bobs))).await;
    assert!(
        status.as_u16() == 404 && body["errcode"] == json!("M_NOT_FOUND")
            || status.as_u16() == 400 && body["errcode"] == json!("M_INVALID_PARAM"),
        "another user's filter id must not be usable: {status} {body}"
    );
    assert_err(&server.client().get(&format!("{SYNC}?timeout=0")).await, 401, "M_MISSING_TOKEN");
}

// 9. Transaction ids.
#[tokio::test]
async fn transaction_id_only_for_the_sending_device() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let other = server.client().login("alice", "password-a").await;
    let room = alice.create_room(json!({})).await;
    let ta = next_batch(&sync(&alice, "timeout=0").await);
    let tb = next_batch(&sync(&other, "timeout=0").await);
    let txn = new_txn_id();
    let sent = assert_ok(
        alice.send_event_raw(&room, "m.room.message", &txn, json!({ "msgtype": "m.text", "body": "mine" })).await,
    );
    let event_id = sent["event_id"].as_str().expect("event_id").to_owned();

    let body = sync(&alice, &since(&ta, 0)).await;
    let tl = timeline(joined(&body, &room));
    assert_eq!(ids(&tl), vec![event_id.clone()], "{body}");
    assert_eq!(tl[0]["unsigned"]["transaction_id"], json!(txn), "the sending device gets its txn id: {}", tl[0]);

    let body = sync(&other, &since(&tb, 0)).await;
    let tl = timeline(joined(&body, &room));
    assert_eq!(ids(&tl), vec![event_id.clone()], "{body}");
    assert!(tl[0]["unsigned"].get("transaction_id").is_none(), "another device must not get the txn id: {}", tl[0]);

    // Initial syncs too.
    let body = sync(&alice, "timeout=0").await;
    let ev = timeline(joined(&body, &room)).into_iter().find(|e| e["event_id"] == json!(event_id)).expect("event");
    assert_eq!(ev["unsigned"]["transaction_id"], json!(txn), "{ev}");
    let body = sync(&other, "timeout=0").await;
    let ev = timeline(joined(&body, &room)).into_iter().find(|e| e["event_id"] == json!(event_id)).expect("event");
    assert!(ev["unsigned"].get("transaction_id").is_none(), "{ev}");
}

// 10. Restart.
#[tokio::test]
async fn tokens_survive_a_restart() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let t0 = next_batch(&sync(&alice, "timeout=0").await);
    let m1 = bob.send_text(&room, "before restart").await;
    let body = sync(&alice, &since(&t0, 0)).await;
    assert_eq!(ids(&timeline(joined(&body, &room))), vec![m1.clone()], "{body}");
    let t1 = next_batch(&body);

    server.restart().await;
    let alice = rebind(&server, &alice);
    let bob = rebind(&server, &bob);
    let empty = sync(&alice, &since(&t1, 0)).await;
    assert!(no_rooms(&empty), "nothing happened since t1: {empty}");
    let m2 = bob.send_text(&room, "after restart").await;
    let body = sync(&alice, &since(&t1, 0)).await;
    assert_eq!(ids(&timeline(joined(&body, &room))), vec![m2.clone()], "sync since a pre-restart token: {body}");
    let body = sync(&alice, &since(&t0, 0)).await;
    assert_eq!(ids(&timeline(joined(&body, &room))), vec![m1, m2.clone()], "sync since t0: {body}");

    // Long-polling on the restarted server still wakes up.
    let poll = {
        let alice = alice.clone();
        let q = since(&next_batch(&body), 10_000);
        tokio::spawn(async move { sync(&alice, &q).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m3 = bob.send_text(&room, "wake").await;
    let body = tokio::time::timeout(Duration::from_secs(3), poll).await.expect("long-poll woke").expect("task");
    assert_eq!(ids(&timeline(joined(&body, &room))), vec![m3], "{body}");
}
