//! Ephemeral room data in `/sync`: typing notifications (`m.typing`), read
//! receipts (`m.receipt`, public and private, threaded) and read markers
//! (`m.fully_read` room account data), with their errors and long-poll wake-ups.

use std::time::{Duration, Instant};

use complement_tests::sync::{next_batch, since, sync};
use complement_tests::{Client, Resp, TestServer, assert_err, assert_ok, enc, now_ms};
use serde_json::{Value, json};

/// The current `next_batch` of `client` (an initial sync).
async fn token(client: &Client) -> String {
    next_batch(&sync(client, "timeout=0").await)
}

/// The `rooms.join.<room>.ephemeral.events` of a sync response (absent room = none).
fn ephemeral(body: &Value, room: &str) -> Vec<Value> {
    body["rooms"]["join"][room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default()
}

/// The single ephemeral event of `event_type` in `room`, if any.
#[track_caller]
fn ephemeral_of(body: &Value, room: &str, event_type: &str) -> Option<Value> {
    let found: Vec<Value> = ephemeral(body, room).into_iter().filter(|e| e["type"] == json!(event_type)).collect();
    assert!(found.len() <= 1, "more than one {event_type} event in {room}: {body}");
    found.into_iter().next()
}

/// The sorted `user_ids` of the room's `m.typing` event, if one is present.
#[track_caller]
fn typing_users(body: &Value, room: &str) -> Option<Vec<String>> {
    let ev = ephemeral_of(body, room, "m.typing")?;
    let ids = ev["content"]["user_ids"].as_array().unwrap_or_else(|| panic!("m.typing without user_ids: {ev}"));
    let mut users: Vec<String> =
        ids.iter().map(|u| u.as_str().unwrap_or_else(|| panic!("non-string user id in {ev}")).to_owned()).collect();
    users.sort();
    Some(users)
}

/// The `content` of the room's `m.receipt` event, if one is present.
#[track_caller]
fn receipts(body: &Value, room: &str) -> Option<Value> {
    let ev = ephemeral_of(body, room, "m.receipt")?;
    assert!(ev["content"].is_object(), "m.receipt content must be an object: {ev}");
    Some(ev["content"].clone())
}

/// `content[event][type][user]` of the room's `m.receipt`, if present.
fn receipt_for(body: &Value, room: &str, event_id: &str, receipt_type: &str, user: &str) -> Option<Value> {
    receipts(body, room).and_then(|c| c.get(event_id)?.get(receipt_type)?.get(user).cloned())
}

/// The event ids for which `user` has a receipt of `receipt_type` in the room's `m.receipt`.
fn receipted_events(body: &Value, room: &str, receipt_type: &str, user: &str) -> Vec<String> {
    let Some(content) = receipts(body, room) else { return Vec::new() };
    let mut events: Vec<String> = content
        .as_object()
        .expect("object")
        .iter()
        .filter(|(_, by_type)| by_type.get(receipt_type).and_then(|u| u.get(user)).is_some())
        .map(|(event, _)| event.clone())
        .collect();
    events.sort();
    events
}

/// The room's account data event of `event_type` in a sync response, if present.
fn room_account_data(body: &Value, room: &str, event_type: &str) -> Option<Value> {
    body["rooms"]["join"][room]["account_data"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == json!(event_type))
        .cloned()
}

/// `PUT /rooms/{room}/typing/{user}`.
async fn typing_raw(client: &Client, room: &str, user: &str, body: Value) -> Resp {
    client.put(&Client::room_path(room, &format!("/typing/{}", enc(user))), body).await
}

/// Sets the client's own typing state; asserts 200.
async fn set_typing(client: &Client, room: &str, typing: bool, timeout_ms: u64) {
    let body = if typing { json!({ "typing": true, "timeout": timeout_ms }) } else { json!({ "typing": false }) };
    assert_ok(typing_raw(client, room, &client.user_id, body).await);
}

/// `POST /rooms/{room}/receipt/{type}/{event}`.
async fn receipt_raw(client: &Client, room: &str, receipt_type: &str, event_id: &str, body: Value) -> Resp {
    let path = Client::room_path(room, &format!("/receipt/{}/{}", enc(receipt_type), enc(event_id)));
    client.post(&path, body).await
}

/// Sends a receipt; asserts 200 with `{}`.
async fn send_receipt(client: &Client, room: &str, receipt_type: &str, event_id: &str, body: Value) {
    let resp = assert_ok(receipt_raw(client, room, receipt_type, event_id, body).await);
    assert_eq!(resp, json!({}), "receipt response must be empty");
}

/// `POST /rooms/{room}/read_markers`.
async fn read_markers_raw(client: &Client, room: &str, body: Value) -> Resp {
    client.post(&Client::room_path(room, "/read_markers"), body).await
}

/// Starts a long-poll `sync` since `token`; the task yields the body and when it returned.
fn long_poll(client: &Client, token: &str, timeout_ms: u64) -> tokio::task::JoinHandle<(Value, Instant)> {
    let client = client.clone();
    let q = since(token, timeout_ms);
    tokio::spawn(async move {
        let body = sync(&client, &q).await;
        (body, Instant::now())
    })
}

/// Waits a moment and asserts the long-poll is still waiting.
async fn assert_still_polling(poll: &tokio::task::JoinHandle<(Value, Instant)>, what: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "long-poll returned before {what}");
}

/// A server with alice (creator) and bob joined to a public room.
struct Pair {
    server: TestServer,
    alice: Client,
    bob: Client,
    room: String,
}

async fn pair() -> Pair {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    Pair { server, alice, bob, room }
}

#[track_caller]
fn assert_ts(receipt: &Value, before: u64, after: u64) {
    let ts = receipt["ts"].as_u64().unwrap_or_else(|| panic!("receipt without an integer ts: {receipt}"));
    assert!(before <= ts && ts <= after, "receipt ts {ts} not within the request [{before}, {after}]: {receipt}");
}

// ---------------------------------------------------------------------------
// Typing.

#[tokio::test]
async fn typing_start_reaches_the_other_member_and_wakes_their_long_poll() {
    let Pair { server: _server, alice, bob, room } = pair().await;
    let t0 = token(&bob).await;
    let ta = token(&alice).await;

    let poll = long_poll(&bob, &t0, 10_000);
    assert_still_polling(&poll, "alice typed").await;
    let typed_at = Instant::now();
    set_typing(&alice, &room, true, 30_000).await;
    let (body, returned_at) = poll.await.expect("poll task");
    let latency = returned_at.saturating_duration_since(typed_at);
    assert!(latency < Duration::from_secs(2), "bob's long-poll returned {latency:?} after alice started typing");
    assert_eq!(typing_users(&body, &room), Some(vec![alice.user_id.clone()]), "{body}");
    let t1 = next_batch(&body);
    assert_ne!(t1, t0, "next_batch must advance after a typing change");

    // A plain incremental sync from the old token shows it too, and alice sees herself.
    let body = sync(&bob, &since(&t0, 0)).await;
    assert_eq!(typing_users(&body, &room), Some(vec![alice.user_id.clone()]), "{body}");
    let body = sync(&alice, &since(&ta, 0)).await;
    assert_eq!(typing_users(&body, &room), Some(vec![alice.user_id.clone()]), "alice's own sync: {body}");

    // Nothing changed since t1: no m.typing repeated.
    let body = sync(&bob, &since(&t1, 0)).await;
    assert_eq!(typing_users(&body, &room), None, "unchanged typing must not repeat: {body}");

    // Renewing the notice while already typing is not a change either.
    set_typing(&alice, &room, true, 30_000).await;
    let body = sync(&bob, &since(&t1, 0)).await;
    assert!(
        typing_users(&body, &room).is_none_or(|u| u == vec![alice.user_id.clone()]),
        "a renewed notice still lists alice: {body}"
    );
}

#[tokio::test]
async fn stopping_typing_shows_the_remaining_typers_then_an_empty_list() {
    let Pair { server: _server, alice, bob, room } = pair().await;
    set_typing(&alice, &room, true, 30_000).await;
    set_typing(&bob, &room, true, 30_000).await;
    let mut both = vec![alice.user_id.clone(), bob.user_id.clone()];
    both.sort();
    let body = sync(&bob, "timeout=0").await;
    assert_eq!(typing_users(&body, &room), Some(both.clone()), "both typing (initial sync): {body}");
    let t1 = next_batch(&body);

    // Alice stops: bob's long-poll wakes with only bob left.
    let poll = long_poll(&bob, &t1, 10_000);
    assert_still_polling(&poll, "alice stopped typing").await;
    let stopped_at = Instant::now();
    set_typing(&alice, &room, false, 0).await;
    let (body, returned_at) = poll.await.expect("poll task");
    let latency = returned_at.saturating_duration_since(stopped_at);
    assert!(latency < Duration::from_secs(2), "long-poll returned {latency:?} after alice stopped typing");
    assert_eq!(typing_users(&body, &room), Some(vec![bob.user_id.clone()]), "{body}");
    let t2 = next_batch(&body);

    // Bob stops too: an empty list (for alice as well).
    let ta = token(&alice).await;
    set_typing(&bob, &room, false, 0).await;
    let body = sync(&bob, &since(&t2, 0)).await;
    assert_eq!(typing_users(&body, &room), Some(vec![]), "nobody typing after both stopped: {body}");
    let body = sync(&alice, &since(&ta, 0)).await;
    assert_eq!(typing_users(&body, &room), Some(vec![]), "alice's view after bob stopped: {body}");
    // From before everything: only the net result.
    let body = sync(&bob, &since(&t1, 0)).await;
    assert_eq!(typing_users(&body, &room), Some(vec![]), "since t1: {body}");
}

#[tokio::test]
async fn a_typing_notice_with_a_short_timeout_ends_by_itself() {
    let Pair { server: _server, alice, bob, room } = pair().await;
    let t0 = token(&bob).await;
    let typed_at = Instant::now();
    set_typing(&alice, &room, true, 500).await;
    let body = sync(&bob, &since(&t0, 0)).await;
    assert_eq!(typing_users(&body, &room), Some(vec![alice.user_id.clone()]), "right after typing: {body}");
    let t1 = next_batch(&body);

    // The expiry wakes a long-poll and shows an empty list, without alice doing anything.
    let poll = long_poll(&bob, &t1, 10_000);
    let (body, returned_at) = poll.await.expect("poll task");
    let after = returned_at.saturating_duration_since(typed_at);
    assert!(after >= Duration::from_millis(400), "long-poll returned {after:?} after a 500 ms typing notice: {body}");
    assert!(after < Duration::from_millis(3000), "the 500 ms notice expired only {after:?} later: {body}");
    assert_eq!(typing_users(&body, &room), Some(vec![]), "expired typing notice: {body}");

    // A later plain incremental sync agrees.
    let body = sync(&bob, &since(&t1, 0)).await;
    assert_eq!(typing_users(&body, &room), Some(vec![]), "incremental sync after the expiry: {body}");
    let body = sync(&bob, &since(&t0, 0)).await;
    assert!(
        typing_users(&body, &room).is_none_or(|u| u.is_empty()),
        "since before the notice, alice must no longer be typing: {body}"
    );
}

#[tokio::test]
async fn typing_for_another_user_or_outside_the_room_is_forbidden() {
    let Pair { server, alice, bob, room } = pair().await;
    let carol = server.register("carol", "password-c").await;
    let t0 = token(&bob).await;

    let resp = typing_raw(&alice, &room, &bob.user_id, json!({ "typing": true, "timeout": 30_000 })).await;
    assert_err(&resp, 403, "M_FORBIDDEN");
    let resp = typing_raw(&carol, &room, &carol.user_id, json!({ "typing": true, "timeout": 30_000 })).await;
    assert_err(&resp, 403, "M_FORBIDDEN");
    let resp = typing_raw(&alice, "!nowhere:localhost", &alice.user_id, json!({ "typing": true })).await;
    assert_err(&resp, 403, "M_FORBIDDEN");

    // None of that shows up.
    let body = sync(&bob, &since(&t0, 0)).await;
    assert_eq!(typing_users(&body, &room), None, "rejected typing requests must not appear: {body}");

    // After leaving, bob may no longer type in the room.
    bob.leave(&room).await;
    let resp = typing_raw(&bob, &room, &bob.user_id, json!({ "typing": true, "timeout": 30_000 })).await;
    assert_err(&resp, 403, "M_FORBIDDEN");
}

// ---------------------------------------------------------------------------
// Receipts.

#[tokio::test]
async fn a_read_receipt_reaches_both_members_with_ts_and_wakes_long_polls() {
    let Pair { server: _server, alice, bob, room } = pair().await;
    let event = alice.send_text(&room, "read me").await;
    let ta = token(&alice).await;
    let tb = token(&bob).await;

    let poll = long_poll(&alice, &ta, 10_000);
    assert_still_polling(&poll, "bob's receipt").await;
    let sent_at = Instant::now();
    let before = now_ms();
    send_receipt(&bob, &room, "m.read", &event, json!({})).await;
    let after = now_ms();
    let (body, returned_at) = poll.await.expect("poll task");
    let latency = returned_at.saturating_duration_since(sent_at);
    assert!(latency < Duration::from_secs(2), "alice's long-poll returned {latency:?} after bob's receipt");
    let r = receipt_for(&body, &room, &event, "m.read", &bob.user_id)
        .unwrap_or_else(|| panic!("no m.read of bob on {event} in alice's sync: {body}"));
    assert_ts(&r, before, after);
    assert!(r.get("thread_id").is_none(), "an unthreaded receipt has no thread_id: {r}");
    assert!(timeline_is_empty(&body, &room), "a receipt is not a timeline event: {body}");

    let body = sync(&bob, &since(&tb, 0)).await;
    let r = receipt_for(&body, &room, &event, "m.read", &bob.user_id)
        .unwrap_or_else(|| panic!("no m.read of bob on {event} in bob's own sync: {body}"));
    assert_ts(&r, before, after);

    // Only bob's receipt changed.
    let content = receipts(&body, &room).expect("m.receipt");
    assert_eq!(content, json!({ event.clone(): { "m.read": { bob.user_id.clone(): r } } }), "{body}");

    // Nothing new since: no m.receipt repeated.
    let body = sync(&alice, &since(&ta, 0)).await;
    let t = next_batch(&body);
    let body = sync(&alice, &since(&t, 0)).await;
    assert!(receipts(&body, &room).is_none(), "unchanged receipts must not repeat: {body}");
}

fn timeline_is_empty(body: &Value, room: &str) -> bool {
    body["rooms"]["join"][room]["timeline"]["events"].as_array().is_none_or(|e| e.is_empty())
}

#[tokio::test]
async fn a_private_read_receipt_is_only_shown_to_its_owner() {
    let Pair { server: _server, alice, bob, room } = pair().await;
    let event = alice.send_text(&room, "secretly read").await;
    let ta = token(&alice).await;
    let tb = token(&bob).await;

    // Bob's own long-poll wakes for his private receipt; alice's must not.
    let poll = long_poll(&alice, &ta, 1_000);
    let own_poll = long_poll(&bob, &tb, 10_000);
    assert_still_polling(&own_poll, "bob's private receipt").await;
    let before = now_ms();
    let sent_at = Instant::now();
    send_receipt(&bob, &room, "m.read.private", &event, json!({})).await;
    let after = now_ms();
    let (body, returned_at) = own_poll.await.expect("poll task");
    let latency = returned_at.saturating_duration_since(sent_at);
    assert!(latency < Duration::from_secs(2), "bob's long-poll returned {latency:?} after his private receipt");
    assert!(receipt_for(&body, &room, &event, "m.read.private", &bob.user_id).is_some(), "bob's long-poll: {body}");
    let (body, returned_at) = poll.await.expect("poll task");
    assert!(receipts(&body, &room).is_none(), "alice must not see bob's private receipt: {body}");
    let waited = returned_at.saturating_duration_since(sent_at);
    assert!(waited >= Duration::from_millis(400), "alice's long-poll woke {waited:?} after a private receipt: {body}");

    let body = sync(&bob, &since(&tb, 0)).await;
    let r = receipt_for(&body, &room, &event, "m.read.private", &bob.user_id)
        .unwrap_or_else(|| panic!("bob must see his own private receipt: {body}"));
    assert_ts(&r, before, after);
    assert!(receipt_for(&body, &room, &event, "m.read", &bob.user_id).is_none(), "no public receipt: {body}");

    let body = sync(&alice, &since(&ta, 0)).await;
    assert!(receipts(&body, &room).is_none(), "alice's incremental sync: {body}");
    let body = sync(&alice, "timeout=0").await;
    assert!(
        receipts(&body, &room).is_none_or(|c| !c.to_string().contains("m.read.private")),
        "alice's initial sync must not carry bob's private receipt: {body}"
    );
    let body = sync(&bob, "timeout=0").await;
    assert!(receipt_for(&body, &room, &event, "m.read.private", &bob.user_id).is_some(), "bob initial: {body}");

    // A public receipt alongside is visible to alice; the private one still is not.
    send_receipt(&bob, &room, "m.read", &event, json!({})).await;
    let body = sync(&alice, &since(&ta, 0)).await;
    assert!(receipt_for(&body, &room, &event, "m.read", &bob.user_id).is_some(), "{body}");
    assert!(receipt_for(&body, &room, &event, "m.read.private", &bob.user_id).is_none(), "{body}");
}

#[tokio::test]
async fn a_threaded_receipt_carries_its_thread_id() {
    let Pair { server: _server, alice, bob, room } = pair().await;
    let root = alice.send_text(&room, "thread root").await;
    let reply = alice
        .send_message(
            &room,
            json!({
                "msgtype": "m.text",
                "body": "in thread",
                "m.relates_to": { "rel_type": "m.thread", "event_id": root },
            }),
        )
        .await;
    let main = alice.send_text(&room, "main timeline").await;
    let ta = token(&alice).await;

    send_receipt(&bob, &room, "m.read", &reply, json!({ "thread_id": root })).await;
    send_receipt(&bob, &room, "m.read", &main, json!({ "thread_id": "main" })).await;
    let body = sync(&alice, &since(&ta, 0)).await;
    let r = receipt_for(&body, &room, &reply, "m.read", &bob.user_id)
        .unwrap_or_else(|| panic!("no threaded receipt on the reply: {body}"));
    assert_eq!(r["thread_id"], json!(root), "{r}");
    assert!(r["ts"].is_u64(), "{r}");
    let r = receipt_for(&body, &room, &main, "m.read", &bob.user_id)
        .unwrap_or_else(|| panic!("no main-thread receipt: {body}"));
    assert_eq!(r["thread_id"], json!("main"), "{r}");
    // Receipts in different threads coexist.
    let mut expected = vec![reply.clone(), main.clone()];
    expected.sort();
    assert_eq!(receipted_events(&body, &room, "m.read", &bob.user_id), expected, "{body}");

    // Invalid thread ids, and a threaded m.fully_read.
    for bad in [json!({ "thread_id": "" }), json!({ "thread_id": "not-an-event" })] {
        assert_err(&receipt_raw(&bob, &room, "m.read", &main, bad).await, 400, "M_INVALID_PARAM");
    }
    let resp = receipt_raw(&bob, &room, "m.fully_read", &main, json!({ "thread_id": "main" })).await;
    assert_err(&resp, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn a_newer_receipt_replaces_the_older_one() {
    let Pair { server: _server, alice, bob, room } = pair().await;
    let first = alice.send_text(&room, "first").await;
    let second = alice.send_text(&room, "second").await;
    let ta = token(&alice).await;

    send_receipt(&bob, &room, "m.read", &first, json!({})).await;
    let body = sync(&alice, &since(&ta, 0)).await;
    assert_eq!(receipted_events(&body, &room, "m.read", &bob.user_id), vec![first.clone()], "{body}");
    let t1 = next_batch(&body);

    send_receipt(&bob, &room, "m.read", &second, json!({})).await;
    let body = sync(&alice, &since(&t1, 0)).await;
    assert_eq!(
        receipted_events(&body, &room, "m.read", &bob.user_id),
        vec![second.clone()],
        "the next sync shows only bob's new receipt: {body}"
    );
    assert_eq!(receipts(&body, &room).expect("m.receipt").as_object().map(|o| o.len()), Some(1), "{body}");

    // From before both, and in an initial sync: only the latest.
    let body = sync(&alice, &since(&ta, 0)).await;
    assert_eq!(receipted_events(&body, &room, "m.read", &bob.user_id), vec![second.clone()], "since ta: {body}");
    let body = sync(&alice, "timeout=0").await;
    assert_eq!(receipted_events(&body, &room, "m.read", &bob.user_id), vec![second.clone()], "initial: {body}");
}

#[tokio::test]
async fn bad_receipt_types_and_unknown_events_are_rejected() {
    let Pair { server: _server, alice, bob, room } = pair().await;
    let event = alice.send_text(&room, "hello").await;
    let other_room = alice.create_room(json!({})).await;
    let elsewhere = alice.send_text(&other_room, "elsewhere").await;
    let tb = token(&bob).await;

    for bad in ["m.bogus", "m.receipt", "m.read.public"] {
        assert_err(&receipt_raw(&bob, &room, bad, &event, json!({})).await, 400, "M_INVALID_PARAM");
    }
    let unknown = "$doesnotexist000000000000000000000000000000";
    for receipt_type in ["m.read", "m.read.private", "m.fully_read"] {
        assert_err(&receipt_raw(&bob, &room, receipt_type, unknown, json!({})).await, 404, "M_NOT_FOUND");
    }
    // An event of another room is not in this one.
    assert_err(&receipt_raw(&alice, &room, "m.read", &elsewhere, json!({})).await, 404, "M_NOT_FOUND");
    assert_err(&read_markers_raw(&bob, &room, json!({ "m.read": unknown })).await, 404, "M_NOT_FOUND");
    assert_err(&read_markers_raw(&bob, &room, json!({ "m.fully_read": unknown })).await, 404, "M_NOT_FOUND");

    // Nothing was recorded.
    let body = sync(&bob, &since(&tb, 0)).await;
    assert!(receipts(&body, &room).is_none(), "rejected receipts must not appear: {body}");
    assert!(room_account_data(&body, &room, "m.fully_read").is_none(), "{body}");
}

#[tokio::test]
async fn receipts_and_read_markers_from_non_members_are_forbidden() {
    let Pair { server, alice, bob, room } = pair().await;
    let carol = server.register("carol", "password-c").await;
    let event = alice.send_text(&room, "members only").await;
    let tb = token(&bob).await;

    for receipt_type in ["m.read", "m.read.private", "m.fully_read"] {
        assert_err(&receipt_raw(&carol, &room, receipt_type, &event, json!({})).await, 403, "M_FORBIDDEN");
    }
    assert_err(&read_markers_raw(&carol, &room, json!({ "m.read": event })).await, 403, "M_FORBIDDEN");
    assert_err(&read_markers_raw(&carol, &room, json!({ "m.fully_read": event })).await, 403, "M_FORBIDDEN");
    let resp = receipt_raw(&carol, "!nowhere:localhost", "m.read", &event, json!({})).await;
    assert_err(&resp, 403, "M_FORBIDDEN");

    let body = sync(&bob, &since(&tb, 0)).await;
    assert!(receipts(&body, &room).is_none(), "a non-member's receipt must not appear: {body}");
}

// ---------------------------------------------------------------------------
// Read markers.

#[tokio::test]
async fn read_markers_set_fully_read_account_data_and_receipts() {
    let Pair { server: _server, alice, bob, room } = pair().await;
    let e1 = alice.send_text(&room, "one").await;
    let e2 = alice.send_text(&room, "two").await;
    let ta = token(&alice).await;
    let tb = token(&bob).await;

    let resp = assert_ok(
        read_markers_raw(&bob, &room, json!({ "m.fully_read": e1, "m.read": e2, "m.read.private": e2 })).await,
    );
    assert_eq!(resp, json!({}), "read_markers response must be empty");

    let body = sync(&bob, &since(&tb, 0)).await;
    let fully = room_account_data(&body, &room, "m.fully_read")
        .unwrap_or_else(|| panic!("no m.fully_read in bob's room account data: {body}"));
    assert_eq!(fully["content"], json!({ "event_id": e1 }), "{fully}");
    assert!(receipt_for(&body, &room, &e2, "m.read", &bob.user_id).is_some(), "bob's m.read on e2: {body}");
    assert!(receipt_for(&body, &room, &e2, "m.read.private", &bob.user_id).is_some(), "bob's private: {body}");
    assert!(
        !receipts(&body, &room).expect("m.receipt").to_string().contains("m.fully_read"),
        "m.fully_read must not appear under m.receipt: {body}"
    );
    let path = format!("/_matrix/client/v3/user/{}/rooms/{}/account_data/m.fully_read", enc(&bob.user_id), enc(&room));
    assert_eq!(assert_ok(bob.get(&path).await), json!({ "event_id": e1 }), "GET {path}");

    // Alice sees bob's public receipt only, and none of his account data.
    let body = sync(&alice, &since(&ta, 0)).await;
    let content = receipts(&body, &room).unwrap_or_else(|| panic!("no m.receipt for alice: {body}"));
    assert_eq!(content.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec![e2.clone()]), "{body}");
    assert_eq!(
        content[&e2].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["m.read".to_owned()]),
        "alice must see only bob's public receipt: {body}"
    );
    assert!(room_account_data(&body, &room, "m.fully_read").is_none(), "bob's marker leaked to alice: {body}");

    // The receipt endpoint with m.fully_read moves the marker, without a receipt.
    let t = next_batch(&sync(&bob, &since(&tb, 0)).await);
    send_receipt(&bob, &room, "m.fully_read", &e2, json!({})).await;
    let body = sync(&bob, &since(&t, 0)).await;
    let fully = room_account_data(&body, &room, "m.fully_read")
        .unwrap_or_else(|| panic!("no updated m.fully_read after the receipt endpoint: {body}"));
    assert_eq!(fully["content"], json!({ "event_id": e2 }), "{fully}");
    assert!(receipts(&body, &room).is_none(), "m.fully_read is not a receipt: {body}");
    assert_eq!(assert_ok(bob.get(&path).await), json!({ "event_id": e2 }), "GET {path}");
    // Another user cannot read bob's marker.
    let (status, _) = alice.get(&path).await;
    assert_eq!(status.as_u16(), 403, "alice reading bob's room account data");
}

#[tokio::test]
async fn an_initial_sync_includes_existing_receipts_also_after_a_restart() {
    let Pair { mut server, alice, bob, room } = pair().await;
    let e1 = alice.send_text(&room, "one").await;
    let e2 = alice.send_text(&room, "two").await;
    send_receipt(&alice, &room, "m.read", &e2, json!({})).await;
    send_receipt(&bob, &room, "m.read", &e1, json!({ "thread_id": "main" })).await;
    send_receipt(&bob, &room, "m.read.private", &e2, json!({})).await;

    let check = |body: &Value, viewer: &str| {
        let a = receipt_for(body, &room, &e2, "m.read", &alice.user_id)
            .unwrap_or_else(|| panic!("{viewer}: no alice m.read on e2: {body}"));
        assert!(a["ts"].is_u64() && a.get("thread_id").is_none(), "{a}");
        let b = receipt_for(body, &room, &e1, "m.read", &bob.user_id)
            .unwrap_or_else(|| panic!("{viewer}: no bob m.read on e1: {body}"));
        assert_eq!(b["thread_id"], json!("main"), "{b}");
        let private = receipt_for(body, &room, &e2, "m.read.private", &bob.user_id);
        assert_eq!(private.is_some(), viewer == "bob", "{viewer}: bob's private receipt: {body}");
    };
    check(&sync(&alice, "timeout=0").await, "alice");
    check(&sync(&bob, "timeout=0").await, "bob");
    // A fresh device has no token and gets everything too.
    let bob2 = server.client().login("bob", "password-b").await;
    check(&sync(&bob2, "timeout=0").await, "bob");

    // Receipts are stored: still there after a restart.
    server.restart().await;
    let rebind = |c: &Client| Client { base: server.base_url().to_owned(), http: server.client().http, ..c.clone() };
    let (alice, bob) = (rebind(&alice), rebind(&bob));
    check(&sync(&alice, "timeout=0").await, "alice");
    check(&sync(&bob, "timeout=0").await, "bob");
}
