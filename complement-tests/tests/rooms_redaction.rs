//! Redactions, per room version (rooms/v1.md and rooms/v11.md "Redactions").

use complement_tests::client::new_txn_id;
use complement_tests::{Client, TestServer, assert_err, assert_ok};
use serde_json::{Value, json};

async fn state_event(client: &Client, room: &str, event_type: &str, state_key: &str) -> Value {
    let state = assert_ok(client.full_state(room).await);
    state
        .as_array()
        .expect("state array")
        .iter()
        .find(|e| e["type"] == json!(event_type) && e["state_key"] == json!(state_key))
        .unwrap_or_else(|| panic!("no {event_type}/{state_key} in {state}"))
        .clone()
}

/// Redacts and returns the redacted event as GET /event serves it, after checking
/// `unsigned.redacted_because`.
async fn redact_and_fetch(client: &Client, room: &str, event_id: &str, version: &str) -> Value {
    let redaction_id = client.redact(room, event_id, Some("because")).await;
    let event = assert_ok(client.get_event(room, event_id).await);
    let because = &event["unsigned"]["redacted_because"];
    assert_eq!(because["event_id"], json!(redaction_id), "v{version}: redacted_because: {event}");
    assert_eq!(because["type"], json!("m.room.redaction"), "{event}");
    assert_eq!(because["sender"], json!(client.user_id), "{event}");
    assert_eq!(because["content"]["reason"], json!("because"), "{event}");
    let redaction = assert_ok(client.get_event(room, &redaction_id).await);
    if matches!(version, "11" | "12") {
        assert_eq!(redaction["content"]["redacts"], json!(event_id), "v{version}: redacts in content: {redaction}");
    } else {
        assert_eq!(redaction["redacts"], json!(event_id), "v{version}: top-level redacts: {redaction}");
    }
    event
}

#[tokio::test]
async fn redacting_a_message_empties_its_content() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    for version in ["1", "3", "10", "11", "12"] {
        let room = alice.create_room(json!({ "room_version": version })).await;
        let event_id = alice
            .send_message(
                &room,
                json!({ "msgtype": "m.text", "body": "oops", "m.relates_to": { "m.in_reply_to": { "event_id": "$x" } } }),
            )
            .await;
        let event = redact_and_fetch(&alice, &room, &event_id, version).await;
        assert_eq!(event["content"], json!({}), "v{version}: {event}");
        assert_eq!(event["type"], json!("m.room.message"));
        assert_eq!(event["sender"], json!(alice.user_id));
        // The same in /messages.
        let page = alice.messages(&room, "dir=b&limit=5").await;
        let in_timeline = page["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .find(|e| e["event_id"] == json!(event_id))
            .unwrap_or_else(|| panic!("redacted event missing from /messages: {page}"))
            .clone();
        assert_eq!(in_timeline["content"], json!({}), "v{version}: {in_timeline}");
        assert!(in_timeline["unsigned"]["redacted_because"].is_object(), "{in_timeline}");
    }
}

#[tokio::test]
async fn redacted_member_events_keep_membership() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    for version in ["1", "11"] {
        let room = alice.create_room(json!({ "room_version": version, "preset": "public_chat" })).await;
        bob.join(&room).await;
        let member_id = bob
            .send_state(
                &room,
                "m.room.member",
                &bob.user_id,
                json!({ "membership": "join", "displayname": "Bobby", "reason": "r" }),
            )
            .await;
        let event = redact_and_fetch(&alice, &room, &member_id, version).await;
        assert_eq!(event["content"], json!({ "membership": "join" }), "v{version}: {event}");
        // Still joined; the current state shows the redacted content.
        let current = assert_ok(alice.get_state(&room, "m.room.member", &bob.user_id).await);
        assert_eq!(current, json!({ "membership": "join" }), "v{version}");
        bob.send_text(&room, "still here").await;
    }
}

#[tokio::test]
async fn redaction_rules_differ_between_v1_and_v11() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    for version in ["1", "11"] {
        let room = alice
            .create_room(json!({
                "room_version": version,
                "creation_content": { "m.federate": true, "com.example.extra": 1 },
                "preset": "public_chat",
            }))
            .await;
        let create = state_event(&alice, &room, "m.room.create", "").await;
        let original_create = create["content"].clone();
        let power_levels = state_event(&alice, &room, "m.room.power_levels", "").await;
        let original_pl = power_levels["content"].clone();
        let join_rules = state_event(&alice, &room, "m.room.join_rules", "").await;
        let hv_id = alice
            .send_state(&room, "m.room.history_visibility", "", json!({ "history_visibility": "shared", "extra": 1 }))
            .await;

        let redacted_create =
            redact_and_fetch(&alice, &room, create["event_id"].as_str().expect("id"), version).await["content"].clone();
        let redacted_pl = redact_and_fetch(&alice, &room, power_levels["event_id"].as_str().expect("id"), version)
            .await["content"]
            .clone();
        let redacted_jr = redact_and_fetch(&alice, &room, join_rules["event_id"].as_str().expect("id"), version).await
            ["content"]
            .clone();
        let redacted_hv = redact_and_fetch(&alice, &room, &hv_id, version).await["content"].clone();

        let mut kept_pl = serde_json::Map::new();
        let mut pl_keys =
            vec!["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"];
        if version == "11" {
            pl_keys.push("invite");
        }
        for key in pl_keys {
            if let Some(v) = original_pl.get(key) {
                kept_pl.insert(key.to_owned(), v.clone());
            }
        }
        assert_eq!(redacted_pl, Value::Object(kept_pl), "v{version} power levels (original {original_pl})");
        if version == "11" {
            assert_eq!(redacted_create, original_create, "v11 keeps all of m.room.create's content");
        } else {
            assert_eq!(redacted_create, json!({ "creator": alice.user_id }), "v1 keeps only creator");
        }
        assert_eq!(redacted_jr, json!({ "join_rule": "public" }), "v{version}");
        assert_eq!(redacted_hv, json!({ "history_visibility": "shared" }), "v{version}");
        // The room still works.
        alice.send_text(&room, "after redacting the create event").await;
    }
}

#[tokio::test]
async fn redaction_permissions() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let carol = server.register("carol", "password-c").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    carol.join(&room).await;
    let alice_msg = alice.send_text(&room, "alice's").await;
    let bob_msg = bob.send_text(&room, "bob's").await;
    let carol_msg = carol.send_text(&room, "carol's").await;

    // redaction.yaml: users may redact their own events; others' need the `redact` level (50).
    assert_err(&bob.redact_raw(&room, &alice_msg, &new_txn_id(), json!({})).await, 403, "M_FORBIDDEN");
    assert_err(&bob.redact_raw(&room, &carol_msg, &new_txn_id(), json!({})).await, 403, "M_FORBIDDEN");
    let own = bob.redact(&room, &bob_msg, None).await;
    assert!(own.starts_with('$'));
    assert_eq!(assert_ok(alice.get_event(&room, &bob_msg).await)["content"], json!({}));
    alice.redact(&room, &carol_msg, Some("moderation")).await;
    assert_eq!(assert_ok(carol.get_event(&room, &carol_msg).await)["content"], json!({}));
    assert_eq!(assert_ok(bob.get_event(&room, &alice_msg).await)["content"]["body"], json!("alice's"));

    // A non-member cannot redact.
    let outsider = server.register("outsider", "password-o").await;
    assert_err(&outsider.redact_raw(&room, &alice_msg, &new_txn_id(), json!({})).await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn redact_is_idempotent_per_txn_id() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({})).await;
    let msg = alice.send_text(&room, "x").await;
    let first = assert_ok(alice.redact_raw(&room, &msg, "r1", json!({ "reason": "a" })).await);
    let again = assert_ok(alice.redact_raw(&room, &msg, "r1", json!({ "reason": "a" })).await);
    assert_eq!(first["event_id"], again["event_id"]);
    let redactions = alice.paginate_all(&room, "b", 50, Some(&json!({ "types": ["m.room.redaction"] })), 5).await;
    assert_eq!(redactions.len(), 1, "{redactions:?}");
}

#[tokio::test]
async fn redaction_sent_through_the_send_endpoint() {
    // room_send.yaml (v1.18): m.room.redaction via /send for all room versions; for
    // versions before 11 the server moves content.redacts to the top level.
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let mut failures = Vec::new();
    for version in ["1", "10", "11", "12"] {
        let room = alice.create_room(json!({ "room_version": version })).await;
        let msg = alice.send_text(&room, "to go").await;
        let redaction_id = alice.send_event(&room, "m.room.redaction", json!({ "redacts": msg, "reason": "r" })).await;
        let event = assert_ok(alice.get_event(&room, &msg).await);
        if event["content"] != json!({}) || event["unsigned"]["redacted_because"]["event_id"] != json!(redaction_id) {
            failures.push(format!("v{version}: target not redacted: {event}"));
        }
        let redaction = assert_ok(alice.get_event(&room, &redaction_id).await);
        let redacts =
            if matches!(version, "11" | "12") { &redaction["content"]["redacts"] } else { &redaction["redacts"] };
        if redacts != &json!(msg) {
            failures.push(format!("v{version}: redacts not where the room version puts it: {redaction}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn redactions_survive_a_restart() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({ "room_version": "11" })).await;
    let msg = alice.send_text(&room, "secret").await;
    let redaction = alice.redact(&room, &msg, None).await;
    server.restart().await;
    let alice = server.client().login("alice", "password-a").await;
    let event = assert_ok(alice.get_event(&room, &msg).await);
    assert_eq!(event["content"], json!({}), "{event}");
    assert_eq!(event["unsigned"]["redacted_because"]["event_id"], json!(redaction), "{event}");
}
