//! Room state: setting and reading state events, power levels.

use complement_tests::{Client, TestServer, assert_err, assert_ok};
use serde_json::json;

#[tokio::test]
async fn set_and_get_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await;

    let name_id = alice.send_state(&room, "m.room.name", "", json!({ "name": "First" })).await;
    assert_eq!(assert_ok(alice.get_state(&room, "m.room.name", "").await), json!({ "name": "First" }));
    alice.send_state(&room, "m.room.name", "", json!({ "name": "Second" })).await;
    assert_eq!(assert_ok(alice.get_state(&room, "m.room.name", "").await), json!({ "name": "Second" }));
    // The old one is still an event in the timeline.
    assert_eq!(assert_ok(alice.get_event(&room, &name_id).await)["content"], json!({ "name": "First" }));

    // Non-empty and unusual state keys.
    for key in ["k", "@alice:localhost", "with space", "slash/inside", "ünï", "$dollar"] {
        alice.send_state(&room, "com.example.keyed", key, json!({ "key": key })).await;
        assert_eq!(assert_ok(alice.get_state(&room, "com.example.keyed", key).await), json!({ "key": key }), "{key}");
    }

    let state = assert_ok(alice.full_state(&room).await);
    let state = state.as_array().expect("GET /state is an array");
    for (event_type, key) in [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id.as_str()),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.name", ""),
        ("com.example.keyed", "slash/inside"),
    ] {
        let found: Vec<_> =
            state.iter().filter(|e| e["type"] == json!(event_type) && e["state_key"] == json!(key)).collect();
        assert_eq!(found.len(), 1, "exactly one current {event_type}/{key} in GET /state");
        for field in ["event_id", "sender", "origin_server_ts", "content", "room_id"] {
            assert!(found[0].get(field).is_some(), "{field} missing: {}", found[0]);
        }
    }
    let name = state.iter().find(|e| e["type"] == json!("m.room.name")).expect("name");
    assert_eq!(name["content"], json!({ "name": "Second" }));
}

#[tokio::test]
async fn missing_state_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({})).await;
    assert_err(&alice.get_state(&room, "m.room.name", "").await, 404, "M_NOT_FOUND");
    assert_err(&alice.get_state(&room, "m.room.member", "@nobody:localhost").await, 404, "M_NOT_FOUND");
    assert_err(&alice.get_state(&room, "com.example.none", "x").await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn empty_state_key_with_and_without_trailing_slash() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({})).await;
    // Without the trailing slash.
    let path = Client::room_path(&room, "/state/m.room.topic");
    assert_ok(alice.put(&path, json!({ "topic": "no slash" })).await);
    assert_eq!(assert_ok(alice.get(&path).await)["topic"], json!("no slash"));
    // room_state.yaml/rooms.yaml: "When an empty string, the trailing slash on this endpoint is optional."
    let slash = Client::room_path(&room, "/state/m.room.topic/");
    assert_eq!(assert_ok(alice.get(&slash).await)["topic"], json!("no slash"), "GET with trailing slash");
    assert_ok(alice.put(&slash, json!({ "topic": "slash" })).await);
    assert_eq!(assert_ok(alice.get(&path).await)["topic"], json!("slash"));
}

#[tokio::test]
async fn get_state_format_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({ "name": "Named" })).await;
    let path = Client::state_path(&room, "m.room.name", "");
    assert_eq!(assert_ok(alice.get(&format!("{path}?format=content")).await), json!({ "name": "Named" }));
    // rooms.yaml (added in v1.16): format=event returns the whole client-format event.
    let event = assert_ok(alice.get(&format!("{path}?format=event")).await);
    assert_eq!(event["type"], json!("m.room.name"), "{event}");
    assert_eq!(event["state_key"], json!(""), "{event}");
    assert_eq!(event["content"], json!({ "name": "Named" }), "{event}");
    assert_eq!(event["sender"], json!(alice.user_id), "{event}");
    assert!(event["event_id"].is_string(), "{event}");
}

#[tokio::test]
async fn power_levels_are_enforced_for_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    for version in ["1", "11", "12"] {
        let room = alice
            .create_room(json!({ "room_version": version, "preset": "private_chat", "invite": [bob.user_id] }))
            .await;
        bob.join(&room).await;
        let pl = assert_ok(alice.get_state(&room, "m.room.power_levels", "").await);
        assert_eq!(pl["state_default"], json!(50), "v{version} private_chat: state_default 50: {pl}");

        // A default user (0) cannot set the name (50) or change power levels.
        assert_err(&bob.send_state_raw(&room, "m.room.name", "", json!({ "name": "bob's" })).await, 403, "M_FORBIDDEN");
        assert_err(&bob.send_state_raw(&room, "com.example.state", "", json!({})).await, 403, "M_FORBIDDEN");
        let mut raised = pl.clone();
        raised["users"][&bob.user_id] = json!(100);
        assert_err(&bob.send_state_raw(&room, "m.room.power_levels", "", raised).await, 403, "M_FORBIDDEN");
        assert_err(&alice.get_state(&room, "m.room.name", "").await, 404, "M_NOT_FOUND");
        // Messages are allowed (events_default 0).
        bob.send_text(&room, "I can talk").await;

        // A user's own member state key is the only member key they may set (join -> join with a displayname).
        bob.send_state(&room, "m.room.member", &bob.user_id, json!({ "membership": "join", "displayname": "B" })).await;
        assert_err(
            &bob.send_state_raw(&room, "m.room.member", &alice.user_id, json!({ "membership": "leave" })).await,
            403,
            "M_FORBIDDEN",
        );

        // After alice raises bob to 50, he can set the name.
        let mut pl_new = pl.clone();
        pl_new["users"][&bob.user_id] = json!(50);
        alice.send_state(&room, "m.room.power_levels", "", pl_new).await;
        bob.send_state(&room, "m.room.name", "", json!({ "name": "bob's" })).await;
        assert_eq!(assert_ok(alice.get_state(&room, "m.room.name", "").await)["name"], json!("bob's"));
        // ... but not power levels (100) nor raise himself above his level.
        let mut self_raise = assert_ok(alice.get_state(&room, "m.room.power_levels", "").await);
        self_raise["users"][&bob.user_id] = json!(75);
        assert_err(&bob.send_state_raw(&room, "m.room.power_levels", "", self_raise).await, 403, "M_FORBIDDEN");
    }
}

#[tokio::test]
async fn v12_creators_cannot_be_listed_in_power_levels() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({ "room_version": "12" })).await;
    let mut pl = assert_ok(alice.get_state(&room, "m.room.power_levels", "").await);
    pl["users"][&alice.user_id] = json!(100);
    assert_err(&alice.send_state_raw(&room, "m.room.power_levels", "", pl).await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn state_is_forbidden_to_non_members_and_frozen_for_former_members() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let mallory = server.register("mallory", "password-m").await;
    let room = alice.create_room(json!({ "preset": "public_chat", "name": "Before" })).await;

    // rooms.yaml: 403 "You aren't a member of the room and weren't previously a member of the room."
    assert_err(&mallory.full_state(&room).await, 403, "M_FORBIDDEN");
    assert_err(&mallory.get_state(&room, "m.room.name", "").await, 403, "M_FORBIDDEN");

    bob.join(&room).await;
    bob.leave(&room).await;
    alice.send_state(&room, "m.room.name", "", json!({ "name": "After" })).await;
    // "If the user has left the room then the state is taken from the state of the room when they left."
    assert_eq!(assert_ok(bob.get_state(&room, "m.room.name", "").await)["name"], json!("Before"));
    let state = assert_ok(bob.full_state(&room).await);
    let name =
        state.as_array().expect("array").iter().find(|e| e["type"] == json!("m.room.name")).expect("name").clone();
    assert_eq!(name["content"]["name"], json!("Before"), "{name}");
}

#[tokio::test]
async fn state_survives_a_restart() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({ "room_version": "10" })).await;
    alice.send_state(&room, "com.example.persist", "k", json!({ "v": [1, 2] })).await;
    server.restart().await;
    let alice = server.client().login("alice", "password-a").await;
    assert_eq!(assert_ok(alice.get_state(&room, "com.example.persist", "k").await), json!({ "v": [1, 2] }));
    alice.send_state(&room, "com.example.persist", "k", json!({ "v": [3] })).await;
    assert_eq!(assert_ok(alice.get_state(&room, "com.example.persist", "k").await), json!({ "v": [3] }));
}
