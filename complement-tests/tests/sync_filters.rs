//! Sync filter features beyond types and limits: `event_fields`,
//! `event_format`, and lazy-loaded members with and without
//! `include_redundant_members`.

use complement_tests::{Client, TestServer, assert_ok, enc};
use serde_json::{Value, json};

const PASSWORD: &str = "sync-filters-password";

async fn sync(client: &Client, filter: &Value, since: Option<&str>) -> Value {
    let mut query = format!("timeout=0&filter={}", enc(&filter.to_string()));
    if let Some(since) = since {
        query.push_str(&format!("&since={}", enc(since)));
    }
    assert_ok(client.get(&format!("/_matrix/client/v3/sync?{query}")).await)
}

fn next_batch(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

fn timeline<'a>(body: &'a Value, room: &str) -> &'a [Value] {
    body["rooms"]["join"][room]["timeline"]["events"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The state keys of the `m.room.member` events in a room's `state` section.
fn members_in_state(body: &Value, room: &str) -> Vec<String> {
    let mut members: Vec<String> = body["rooms"]["join"][room]["state"]["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap_or_default().to_owned())
        .collect();
    members.sort();
    members
}

#[tokio::test]
async fn event_fields_keep_only_the_listed_fields() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let room = alice.create_room(json!({})).await;
    alice.send_message(&room, json!({ "msgtype": "m.text", "body": "hello", "format": "x" })).await;
    let filter = json!({ "event_fields": ["type", "content.body", "content.m\\.relates_to"] });
    let body = sync(&alice, &filter, None).await;
    let events = timeline(&body, &room);
    assert!(!events.is_empty(), "{body}");
    let message = events.iter().find(|e| e["type"] == "m.room.message").unwrap_or_else(|| panic!("{body}"));
    assert_eq!(message, &json!({ "type": "m.room.message", "content": { "body": "hello" } }));
    for event in events {
        let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
        assert!(keys.iter().all(|k| *k == "type" || *k == "content"), "unexpected fields in {event}");
    }
}

#[tokio::test]
async fn event_format_federation_returns_pdus() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let room = alice.create_room(json!({})).await;
    alice.send_text(&room, "hello").await;
    let client = sync(&alice, &json!({ "event_format": "client" }), None).await;
    let message = timeline(&client, &room).iter().find(|e| e["type"] == "m.room.message").cloned().unwrap();
    assert!(message.get("prev_events").is_none() && message["event_id"].is_string(), "{message}");

    let federation = sync(&alice, &json!({ "event_format": "federation" }), None).await;
    let pdu = timeline(&federation, &room).iter().find(|e| e["type"] == "m.room.message").cloned().unwrap();
    for field in ["prev_events", "auth_events", "depth", "hashes", "signatures", "origin_server_ts"] {
        assert!(pdu.get(field).is_some(), "PDU lacks {field}: {pdu}");
    }
    assert_eq!(pdu["content"]["body"], "hello");
}

#[tokio::test]
async fn lazy_loaded_members_are_sent_once_per_device_unless_redundant_ones_are_asked_for() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    carol.join(&room).await;
    let lazy = json!({ "room": { "state": { "lazy_load_members": true }, "timeline": { "limit": 1 } } });

    // Initial sync: the timeline's last event is Carol's join; Bob is not loaded.
    let initial = sync(&alice, &lazy, None).await;
    let members = members_in_state(&initial, &room);
    assert!(members.contains(&alice.user_id), "own membership missing: {members:?}");
    assert!(!members.contains(&bob.user_id), "bob loaded without speaking: {members:?}");

    // Bob speaks: his membership comes with his message, once.
    bob.send_text(&room, "hi").await;
    let first = sync(&alice, &lazy, Some(&next_batch(&initial))).await;
    assert_eq!(members_in_state(&first, &room), vec![bob.user_id.clone()], "{first}");
    bob.send_text(&room, "again").await;
    let second = sync(&alice, &lazy, Some(&next_batch(&first))).await;
    assert_eq!(timeline(&second, &room).len(), 1, "{second}");
    assert!(members_in_state(&second, &room).is_empty(), "bob sent again: {second}");

    // A client retrying the older token (the response was lost) gets him again.
    let retry = sync(&alice, &lazy, Some(&next_batch(&initial))).await;
    assert_eq!(members_in_state(&retry, &room), vec![bob.user_id.clone()], "{retry}");

    // include_redundant_members: the senders' (and one's own) memberships, every time.
    let redundant = json!({ "room": { "state": { "lazy_load_members": true, "include_redundant_members": true } } });
    bob.send_text(&room, "third").await;
    let body = sync(&alice, &redundant, Some(&next_batch(&second))).await;
    let mut expected = vec![alice.user_id.clone(), bob.user_id.clone()];
    expected.sort();
    assert_eq!(members_in_state(&body, &room), expected, "{body}");

    // Another device of Alice's knows nothing yet.
    let other = server.client().login("alice", PASSWORD).await;
    let body = sync(&other, &lazy, None).await;
    let members = members_in_state(&body, &room);
    assert!(members.contains(&bob.user_id), "{members:?}");
}

#[tokio::test]
async fn messages_pages_back_from_a_sync_next_batch() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let room = alice.create_room(json!({})).await;
    alice.send_text(&room, "one").await;
    let token = next_batch(&sync(&alice, &json!({}), None).await);
    alice.send_text(&room, "two (after the token)").await;
    let page = alice.messages(&room, &format!("dir=b&limit=1&from={}", enc(&token))).await;
    let chunk = page["chunk"].as_array().expect("chunk");
    assert_eq!(chunk.len(), 1, "{page}");
    assert_eq!(chunk[0]["content"]["body"], "one", "{page}");
    // Forward from the same token: the later message.
    let page = alice.messages(&room, &format!("dir=f&limit=5&from={}", enc(&token))).await;
    let bodies: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, vec!["two (after the token)"], "{page}");
}

#[tokio::test]
async fn a_lazily_loaded_membership_is_sent_redacted_once_it_is_redacted() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let membership = bob
        .send_state(&room, "m.room.member", &bob.user_id, json!({ "membership": "join", "displayname": "Bobby" }))
        .await;
    let redundant = json!({ "room": { "state": { "lazy_load_members": true, "include_redundant_members": true } } });
    let bobs = |body: &Value| -> Value {
        body["rooms"]["join"][&room]["state"]["events"]
            .as_array()
            .and_then(|events| events.iter().find(|e| e["state_key"] == bob.user_id.as_str()).cloned())
            .unwrap_or_else(|| panic!("no membership of bob in {body}"))
    };

    // Bob speaks: his membership comes along (and the server now holds it in memory).
    let initial = sync(&alice, &redundant, None).await;
    bob.send_text(&room, "hi").await;
    let body = sync(&alice, &redundant, Some(&next_batch(&initial))).await;
    assert_eq!(bobs(&body)["content"]["displayname"], "Bobby", "{body}");

    // Alice redacts it; the next time it comes along, it is the redacted event.
    alice.redact(&room, &membership, Some("no nicknames")).await;
    bob.send_text(&room, "again").await;
    let body = sync(&alice, &redundant, Some(&next_batch(&body))).await;
    let event = bobs(&body);
    assert_eq!(event["event_id"], membership.as_str(), "{body}");
    assert_eq!(event["content"], json!({ "membership": "join" }), "{body}");
    assert!(event["unsigned"]["redacted_because"].is_object(), "{body}");
}
