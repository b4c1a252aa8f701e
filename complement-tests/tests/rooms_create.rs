//! `POST /createRoom`: presets, options, room versions and the initial state.

use complement_tests::client::register_admin;
use complement_tests::{Client, TestServer, assert_err, assert_ok, enc, user_id};
use serde_json::{Value, json};

/// The content of a state event; panics unless 200.
async fn state_content(client: &Client, room: &str, event_type: &str, state_key: &str) -> Value {
    assert_ok(client.get_state(room, event_type, state_key).await)
}

/// The client-format state event `(type, state_key)` from `GET /rooms/{room}/state`.
async fn state_event(client: &Client, room: &str, event_type: &str, state_key: &str) -> Value {
    let state = assert_ok(client.full_state(room).await);
    state
        .as_array()
        .unwrap_or_else(|| panic!("GET /state must return an array: {state}"))
        .iter()
        .find(|e| e["type"] == json!(event_type) && e["state_key"] == json!(state_key))
        .unwrap_or_else(|| panic!("no {event_type}/{state_key} in state {state}"))
        .clone()
}

fn is_url_safe_b64(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_std_b64(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Asserts the event id grammar of a room version.
#[track_caller]
fn assert_event_id_format(version: &str, event_id: &str) {
    let rest = event_id.strip_prefix('$').unwrap_or_else(|| panic!("event id without $: {event_id}"));
    match version {
        "1" | "2" => assert!(
            rest.split_once(':').is_some_and(|(local, server)| !local.is_empty() && server == "localhost"),
            "v{version} event ids are $opaque:localhost, got {event_id}"
        ),
        "3" => assert!(is_std_b64(rest), "v3 event ids are $ + unpadded standard base64 sha256, got {event_id}"),
        _ => assert!(is_url_safe_b64(rest), "v{version} event ids are $ + unpadded url-safe base64, got {event_id}"),
    }
}

#[tokio::test]
async fn default_room_version_is_12_and_room_id_is_the_create_event_hash() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({})).await;
    let create = state_event(&alice, &room, "m.room.create", "").await;
    assert_eq!(create["content"]["room_version"], json!("12"), "{create}");
    let hash = room.strip_prefix('!').unwrap_or_else(|| panic!("room id without !: {room}"));
    assert!(!hash.contains(':'), "v12 room ids have no server part: {room}");
    assert!(is_url_safe_b64(hash), "v12 room id is ! + url-safe base64 reference hash: {room}");
    assert_eq!(create["event_id"], json!(format!("${hash}")), "room id must be the create event id with !: {create}");
    assert_eq!(create["room_id"], json!(room), "clients still see room_id on the create event: {create}");
    assert_eq!(create["sender"], json!(alice.user_id));
    assert!(create["content"].get("creator").is_none(), "v11+ create events have no creator: {create}");

    // The stored PDU of the create event has no room_id (v12 event format).
    let admin = register_admin(server.base_url(), "admin", "admin-password").await;
    let pdu = assert_ok(admin.get(&format!("/_kith/admin/v1/events/{}/pdu", enc(&format!("${hash}")))).await);
    assert_eq!(pdu["room_version"], json!("12"), "{pdu}");
    assert!(pdu["pdu"].get("room_id").is_none(), "the v12 create PDU must not have room_id: {pdu}");
    assert!(pdu["pdu"].get("event_id").is_none(), "v3+ PDUs carry no event_id: {pdu}");
    assert_eq!(pdu["pdu"]["auth_events"], json!([]), "{pdu}");
    assert_eq!(pdu["pdu"]["prev_events"], json!([]), "{pdu}");
}

#[tokio::test]
async fn unsupported_room_versions_are_rejected() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    for version in ["999", "", "12a", "org.example.unknown"] {
        let resp = alice.create_room_raw(json!({ "room_version": version })).await;
        assert_err(&resp, 400, "M_UNSUPPORTED_ROOM_VERSION");
    }
    assert!(alice.joined_rooms().await.is_empty(), "a rejected createRoom must not leave a room behind");
}

#[tokio::test]
async fn create_room_requires_authentication() {
    let server = TestServer::start().await;
    assert_err(&server.client().create_room_raw(json!({})).await, 401, "M_MISSING_TOKEN");
    let bad = server.client().with_token(Some("not-a-token"));
    assert_err(&bad.create_room_raw(json!({})).await, 401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn create_send_and_read_back_in_every_tested_room_version() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"] {
        let room = alice.create_room(json!({ "room_version": version, "preset": "private_chat" })).await;
        assert!(room.starts_with('!'), "{room}");
        if version == "12" {
            assert!(!room.contains(':'), "v12 room id has no server: {room}");
        } else {
            assert!(room.ends_with(":localhost"), "v{version} room ids are !opaque:localhost, got {room}");
        }
        let create = state_content(&alice, &room, "m.room.create", "").await;
        assert_eq!(create["room_version"], json!(version), "{create}");
        if matches!(version, "11" | "12") {
            assert!(create.get("creator").is_none(), "v{version}: no creator in m.room.create: {create}");
        } else {
            assert_eq!(create["creator"], json!(alice.user_id), "v{version}: creator in m.room.create: {create}");
        }

        let content = json!({ "msgtype": "m.text", "body": format!("hello v{version}") });
        let event_id = alice.send_message(&room, content.clone()).await;
        assert_event_id_format(version, &event_id);
        let event = assert_ok(alice.get_event(&room, &event_id).await);
        assert_eq!(event["content"], content, "v{version}: {event}");
        assert_eq!(event["event_id"], json!(event_id));
        assert_eq!(event["room_id"], json!(room));
        assert_eq!(event["sender"], json!(alice.user_id));
        assert_eq!(event["type"], json!("m.room.message"));
        assert!(event["origin_server_ts"].is_u64(), "{event}");

        let page = alice.messages(&room, "dir=b&limit=1").await;
        assert_eq!(page["chunk"][0]["event_id"], json!(event_id), "v{version}: newest event first: {page}");
        let all = alice.paginate_all(&room, "f", 50, None, 10).await;
        assert_eq!(all[0]["type"], json!("m.room.create"), "v{version}: history starts at m.room.create");
        for e in &all {
            assert_event_id_format(version, e["event_id"].as_str().expect("event_id"));
        }
    }
}

#[tokio::test]
async fn room_versions_before_12_carry_room_id_in_the_create_pdu() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let admin = register_admin(server.base_url(), "admin", "admin-password").await;
    for version in ["1", "3", "10", "11"] {
        let room = alice.create_room(json!({ "room_version": version })).await;
        let create = state_event(&alice, &room, "m.room.create", "").await;
        let event_id = create["event_id"].as_str().expect("event_id");
        let pdu = assert_ok(admin.get(&format!("/_kith/admin/v1/events/{}/pdu", enc(event_id))).await);
        assert_eq!(pdu["room_version"], json!(version), "{pdu}");
        assert_eq!(pdu["pdu"]["room_id"], json!(room), "{pdu}");
        if matches!(version, "1" | "2") {
            assert_eq!(pdu["pdu"]["event_id"], json!(event_id), "v1/v2 PDUs carry their event_id: {pdu}");
        } else {
            assert!(pdu["pdu"].get("event_id").is_none(), "v3+ PDUs carry no event_id: {pdu}");
        }
    }
}

#[tokio::test]
async fn presets_set_join_rules_history_visibility_and_guest_access() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let cases = [
        (json!({ "preset": "private_chat" }), "invite", "shared", "can_join"),
        (json!({ "preset": "trusted_private_chat" }), "invite", "shared", "can_join"),
        (json!({ "preset": "public_chat" }), "public", "shared", "forbidden"),
        // Without a preset, the visibility picks it.
        (json!({ "visibility": "public" }), "public", "shared", "forbidden"),
        (json!({ "visibility": "private" }), "invite", "shared", "can_join"),
        (json!({}), "invite", "shared", "can_join"),
    ];
    for (body, join_rule, history, guest) in cases {
        let room = alice.create_room(body.clone()).await;
        let jr = state_content(&alice, &room, "m.room.join_rules", "").await;
        assert_eq!(jr["join_rule"], json!(join_rule), "{body}: {jr}");
        let hv = state_content(&alice, &room, "m.room.history_visibility", "").await;
        assert_eq!(hv["history_visibility"], json!(history), "{body}: {hv}");
        let ga = state_content(&alice, &room, "m.room.guest_access", "").await;
        assert_eq!(ga["guest_access"], json!(guest), "{body}: {ga}");
    }
}

#[tokio::test]
async fn initial_events_come_in_the_specified_order() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice
        .create_room(json!({
            "room_version": "11",
            "preset": "public_chat",
            "room_alias_name": "ordered",
            "initial_state": [{ "type": "com.example.custom", "state_key": "k", "content": { "v": 1 } }],
            "name": "The name",
            "topic": "The topic",
            "invite": [bob.user_id],
        }))
        .await;
    let events = alice.paginate_all(&room, "f", 100, None, 5).await;
    let kinds: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (e["type"].as_str().unwrap_or_default().to_owned(), e["state_key"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id.as_str()),
        ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.guest_access", ""),
        ("com.example.custom", "k"),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", bob.user_id.as_str()),
    ]
    .iter()
    .map(|(t, k)| ((*t).to_owned(), (*k).to_owned()))
    .collect();
    // The preset's events may come in any order among themselves.
    let mut got = kinds.clone();
    let mut want = expected.clone();
    got[4..7].sort();
    want[4..7].sort();
    assert_eq!(got, want, "initial events (type, state_key) in order: {kinds:?}");
    assert_eq!(events[1]["content"]["membership"], json!("join"));
    assert_eq!(events[10]["content"]["membership"], json!("invite"));
}

#[tokio::test]
async fn name_topic_and_initial_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice
        .create_room(json!({
            "preset": "private_chat",
            "name": "Explicit name",
            "topic": "Explicit topic",
            "initial_state": [
                { "type": "m.room.name", "content": { "name": "Overridden by name" } },
                { "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "joined" } },
                { "type": "com.example.settings", "state_key": "a", "content": { "list": [1, 2, 3], "nested": { "x": "y" } } },
                { "type": "com.example.settings", "content": { "empty_key": true } },
            ],
        }))
        .await;
    assert_eq!(state_content(&alice, &room, "m.room.name", "").await["name"], json!("Explicit name"));
    assert_eq!(state_content(&alice, &room, "m.room.topic", "").await["topic"], json!("Explicit topic"));
    // initial_state takes precedence over the preset.
    let hv = state_content(&alice, &room, "m.room.history_visibility", "").await;
    assert_eq!(hv["history_visibility"], json!("joined"), "{hv}");
    assert_eq!(
        state_content(&alice, &room, "com.example.settings", "a").await,
        json!({ "list": [1, 2, 3], "nested": { "x": "y" } })
    );
    assert_eq!(state_content(&alice, &room, "com.example.settings", "").await, json!({ "empty_key": true }));
    // The preset still applied what initial_state did not override.
    assert_eq!(state_content(&alice, &room, "m.room.join_rules", "").await["join_rule"], json!("invite"));
}

#[tokio::test]
async fn creation_content_is_merged_and_server_keys_win() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice
        .create_room(json!({
            "room_version": "10",
            "creation_content": { "m.federate": false, "com.example.extra": "x", "creator": "@mallory:localhost", "room_version": "1" },
        }))
        .await;
    let create = state_content(&alice, &room, "m.room.create", "").await;
    assert_eq!(create["m.federate"], json!(false), "{create}");
    assert_eq!(create["com.example.extra"], json!("x"), "{create}");
    assert_eq!(create["creator"], json!(alice.user_id), "the server overwrites creator: {create}");
    assert_eq!(create["room_version"], json!("10"), "the server overwrites room_version: {create}");

    let room = alice.create_room(json!({ "creation_content": { "type": "m.space" } })).await;
    assert_eq!(state_content(&alice, &room, "m.room.create", "").await["type"], json!("m.space"));
}

#[tokio::test]
async fn power_levels_defaults_and_override() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;

    // Versions up to 11: the creator is listed with 100.
    let room = alice.create_room(json!({ "room_version": "11", "preset": "private_chat" })).await;
    let pl = state_content(&alice, &room, "m.room.power_levels", "").await;
    assert_eq!(pl["users"][&alice.user_id], json!(100), "{pl}");

    // Version 12: creators are not listed; tombstone above state_default.
    let room = alice.create_room(json!({ "room_version": "12", "preset": "private_chat" })).await;
    let pl = state_content(&alice, &room, "m.room.power_levels", "").await;
    assert!(pl["users"].get(&alice.user_id).is_none(), "v12 creators must not be in users: {pl}");
    let state_default = pl["state_default"].as_i64().unwrap_or(50);
    let tombstone = pl["events"]["m.room.tombstone"].as_i64();
    assert!(
        tombstone.is_some_and(|t| t > state_default),
        "v12: m.room.tombstone must be explicitly above state_default: {pl}"
    );

    // The override is applied on top of the defaults.
    let room = alice
        .create_room(json!({
            "room_version": "11",
            "power_level_content_override": {
                "users_default": 10,
                "events": { "m.room.topic": 80 },
                "users": { alice.user_id.clone(): 100, "@carol:localhost": 42 },
            },
        }))
        .await;
    let pl = state_content(&alice, &room, "m.room.power_levels", "").await;
    assert_eq!(pl["users_default"], json!(10), "{pl}");
    assert_eq!(pl["events"]["m.room.topic"], json!(80), "{pl}");
    assert_eq!(pl["users"]["@carol:localhost"], json!(42), "{pl}");
    assert_eq!(pl["users"][&alice.user_id], json!(100), "{pl}");
    assert!(pl["state_default"].is_i64() && pl["ban"].is_i64() && pl["kick"].is_i64(), "defaults kept: {pl}");
}

#[tokio::test]
async fn trusted_private_chat_gives_invitees_creator_power() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;

    let room = alice
        .create_room(json!({ "room_version": "11", "preset": "trusted_private_chat", "invite": [bob.user_id] }))
        .await;
    let pl = state_content(&alice, &room, "m.room.power_levels", "").await;
    assert_eq!(pl["users"][&bob.user_id], pl["users"][&alice.user_id], "v11: invitee gets the creator's level: {pl}");

    // v12: invitees SHOULD become additional creators.
    let room = alice
        .create_room(json!({ "room_version": "12", "preset": "trusted_private_chat", "invite": [bob.user_id] }))
        .await;
    let create = state_content(&alice, &room, "m.room.create", "").await;
    assert_eq!(create["additional_creators"], json!([bob.user_id]), "{create}");
}

#[tokio::test]
async fn invite_list_and_is_direct() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let carol = server.register("carol", "password-c").await;
    let room = alice.create_room(json!({ "invite": [bob.user_id, carol.user_id], "is_direct": true })).await;
    for user in [&bob, &carol] {
        let member = state_content(&alice, &room, "m.room.member", &user.user_id).await;
        assert_eq!(member["membership"], json!("invite"), "{member}");
        assert_eq!(member["is_direct"], json!(true), "{member}");
    }
    // Invitees can join the invite-only room.
    assert_eq!(bob.join(&room).await, room);
    let room = alice.create_room(json!({ "invite": [bob.user_id] })).await;
    let member = state_content(&alice, &room, "m.room.member", &bob.user_id).await;
    assert!(member.get("is_direct").is_none_or(|d| d == &json!(false)), "{member}");
}

#[tokio::test]
async fn room_alias_name_creates_the_canonical_alias() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "lobby" })).await;
    let alias = "#lobby:localhost";
    let canonical = state_content(&alice, &room, "m.room.canonical_alias", "").await;
    assert_eq!(canonical["alias"], json!(alias), "{canonical}");
    let resolved = assert_ok(bob.get(&format!("/_matrix/client/v3/directory/room/{}", enc(alias))).await);
    assert_eq!(resolved["room_id"], json!(room), "{resolved}");
    assert_eq!(bob.join(alias).await, room);

    let taken = alice.create_room_raw(json!({ "room_alias_name": "lobby" })).await;
    assert_err(&taken, 400, "M_ROOM_IN_USE");
    let taken = bob.create_room_raw(json!({ "room_alias_name": "lobby", "preset": "public_chat" })).await;
    assert_err(&taken, 400, "M_ROOM_IN_USE");
    assert_eq!(bob.joined_rooms().await, vec![room], "a failed createRoom must not create a room");
}

#[tokio::test]
async fn visibility_public_publishes_in_the_room_directory() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let public = alice.create_room(json!({ "visibility": "public", "name": "Public one" })).await;
    let private = alice.create_room(json!({ "visibility": "private", "preset": "public_chat" })).await;
    let list = assert_ok(alice.get("/_matrix/client/v3/publicRooms").await);
    let ids: Vec<&str> = list["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk: {list}"))
        .iter()
        .filter_map(|r| r["room_id"].as_str())
        .collect();
    assert!(ids.contains(&public.as_str()), "{list}");
    assert!(!ids.contains(&private.as_str()), "{list}");
    let vis = assert_ok(alice.get(&format!("/_matrix/client/v3/directory/list/room/{}", enc(&public))).await);
    assert_eq!(vis["visibility"], json!("public"));
    let vis = assert_ok(alice.get(&format!("/_matrix/client/v3/directory/list/room/{}", enc(&private))).await);
    assert_eq!(vis["visibility"], json!("private"));
}

#[tokio::test]
async fn creator_is_joined_and_rooms_survive_a_restart() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let first = alice.create_room(json!({ "name": "one" })).await;
    let second = alice.create_room(json!({ "room_version": "1", "name": "two" })).await;
    let mut rooms = alice.joined_rooms().await;
    rooms.sort();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(rooms, expected);
    let members = assert_ok(alice.get(&Client::room_path(&first, "/joined_members")).await);
    assert!(members["joined"][&alice.user_id].is_object(), "{members}");

    server.restart().await;
    let alice = server.client().login("alice", "password-a").await;
    let mut rooms = alice.joined_rooms().await;
    rooms.sort();
    assert_eq!(rooms, expected);
    assert_eq!(state_content(&alice, &second, "m.room.name", "").await["name"], json!("two"));
    let event_id = alice.send_text(&second, "after restart").await;
    assert_event_id_format("1", &event_id);
    assert_eq!(user_id("alice"), alice.user_id);
}
