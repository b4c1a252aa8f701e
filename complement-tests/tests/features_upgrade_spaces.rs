//! Room upgrades (`/upgrade`) and the space hierarchy (`/hierarchy`).

mod support;

use complement_tests::{Client, TestServer, assert_err, assert_ok, enc};
use serde_json::{Value, json};
use support::*;

// ----------------------------------------------------------------- upgrades

fn upgrade_path(room: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/upgrade", enc(room))
}

#[tokio::test]
async fn upgrade_creates_replacement_room_with_tombstone_predecessor_and_alias() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let old = create_room(
        &alice,
        json!({
            "preset": "public_chat",
            "room_version": "11",
            "room_alias_name": "upgrademe",
            "name": "Before upgrade",
            "topic": "a topic",
        }),
    )
    .await;
    let old_pl = get_state(&alice, &old, "m.room.power_levels", "").await;

    let body = assert_ok(alice.post(&upgrade_path(&old), json!({ "new_version": "12" })).await);
    let new = body["replacement_room"].as_str().unwrap_or_else(|| panic!("replacement_room: {body}")).to_owned();
    assert_ne!(new, old);
    assert!(new.starts_with('!'), "{new}");

    let tombstone = get_state(&alice, &old, "m.room.tombstone", "").await;
    assert_eq!(tombstone["replacement_room"], json!(new), "{tombstone}");
    assert!(tombstone["body"].is_string() || tombstone.get("body").is_none(), "{tombstone}");

    let create = get_state(&alice, &new, "m.room.create", "").await;
    assert_eq!(create["predecessor"]["room_id"], json!(old), "{create}");
    assert_eq!(create["room_version"], json!("12"), "{create}");

    // Transferable state is copied.
    assert_eq!(get_state(&alice, &new, "m.room.name", "").await["name"], json!("Before upgrade"));
    assert_eq!(get_state(&alice, &new, "m.room.topic", "").await["topic"], json!("a topic"));
    assert_eq!(get_state(&alice, &new, "m.room.join_rules", "").await["join_rule"], json!("public"));

    // The alias now points at the new room.
    let alias = assert_ok(alice.get(&alias_path("#upgrademe:localhost")).await);
    assert_eq!(alias["room_id"], json!(new), "{alias}");

    // The old room's power levels are locked down.
    let pl = get_state(&alice, &old, "m.room.power_levels", "").await;
    let users_default = pl["users_default"].as_i64().unwrap_or(0);
    let threshold = 50.max(users_default + 1);
    let events_default = pl["events_default"].as_i64().unwrap_or(0);
    let invite = pl["invite"].as_i64().unwrap_or(0);
    assert!(events_default >= threshold, "events_default must be raised to >= {threshold}: {pl} (was {old_pl})");
    assert!(invite >= threshold, "invite must be raised to >= {threshold}: {pl}");
    assert!(events_default > old_pl["events_default"].as_i64().unwrap_or(0), "raised: {old_pl} -> {pl}");

    // The upgrading user is in the new room.
    let joined = assert_ok(alice.get("/_matrix/client/v3/joined_rooms").await);
    assert!(joined["joined_rooms"].as_array().is_some_and(|r| r.contains(&json!(new))), "{joined}");
}

#[tokio::test]
async fn old_room_after_upgrade_rejects_messages_from_ordinary_members() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let old = create_public_room(&alice).await;
    join(&bob, &old).await;
    send_text(&bob, &old, "before the upgrade").await;
    assert_ok(alice.post(&upgrade_path(&old), json!({ "new_version": "12" })).await);
    let resp = send_event_raw(&bob, &old, "m.room.message", json!({ "msgtype": "m.text", "body": "late" })).await;
    assert_err(&resp, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn upgrade_by_unprivileged_user_is_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_public_room(&alice).await;
    join(&bob, &room).await;
    assert_err(&bob.post(&upgrade_path(&room), json!({ "new_version": "12" })).await, 403, "M_FORBIDDEN");
    let resp = get_state_raw(&alice, &room, "m.room.tombstone", "").await;
    assert_err(&resp, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn upgrade_to_unknown_version_is_unsupported() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let resp = alice.post(&upgrade_path(&room), json!({ "new_version": "no-such-version" })).await;
    assert_err(&resp, 400, "M_UNSUPPORTED_ROOM_VERSION");
}

// ---------------------------------------------------------------- hierarchy

fn hierarchy_path(room: &str, query: &str) -> String {
    format!("/_matrix/client/v1/rooms/{}/hierarchy{query}", enc(room))
}

fn room_ids(body: &Value) -> Vec<String> {
    body["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("no rooms array: {body}"))
        .iter()
        .map(|r| r["room_id"].as_str().unwrap_or_else(|| panic!("room_id: {r}")).to_owned())
        .collect()
}

async fn create_space(client: &Client, preset: &str, name: &str) -> String {
    create_room(client, json!({ "preset": preset, "name": name, "creation_content": { "type": "m.space" } })).await
}

async fn add_child(client: &Client, space: &str, child: &str, suggested: bool) {
    let mut content = json!({ "via": ["localhost"] });
    if suggested {
        content["suggested"] = json!(true);
    }
    put_state(client, space, "m.space.child", child, content).await;
}

/// space → (a [suggested], b, sub-space → c)
struct Spaces {
    _server: TestServer,
    alice: Client,
    bob: Client,
    space: String,
    a: String,
    b: String,
    sub: String,
    c: String,
}

async fn spaces() -> Spaces {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let space = create_space(&alice, "public_chat", "Top space").await;
    let a = create_room(&alice, json!({ "preset": "public_chat", "name": "Room A" })).await;
    let b = create_room(&alice, json!({ "preset": "public_chat", "name": "Room B" })).await;
    let sub = create_space(&alice, "public_chat", "Sub space").await;
    let c = create_room(&alice, json!({ "preset": "public_chat", "name": "Room C" })).await;
    add_child(&alice, &space, &a, true).await;
    add_child(&alice, &space, &b, false).await;
    add_child(&alice, &space, &sub, false).await;
    add_child(&alice, &sub, &c, false).await;
    Spaces { _server: server, alice, bob, space, a, b, sub, c }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn hierarchy_lists_space_and_children() {
    let s = spaces().await;
    let body = assert_ok(s.bob.get(&hierarchy_path(&s.space, "")).await);
    let got = room_ids(&body);
    assert_eq!(got.first(), Some(&s.space), "the requested space comes first: {body}");
    assert_eq!(
        sorted(got.clone()),
        sorted(vec![s.space.clone(), s.a.clone(), s.b.clone(), s.sub.clone(), s.c.clone()]),
        "{body}"
    );
    assert!(body.get("next_batch").is_none(), "{body}");

    let rooms = body["rooms"].as_array().expect("rooms");
    let top = &rooms[0];
    assert_eq!(top["room_type"], json!("m.space"), "{top}");
    assert_eq!(top["name"], json!("Top space"));
    assert_eq!(top["num_joined_members"], json!(1));
    assert_eq!(top["join_rule"], json!("public"));
    assert_eq!(top["world_readable"], json!(false));
    assert_eq!(top["guest_can_join"], json!(false));
    let children = top["children_state"].as_array().unwrap_or_else(|| panic!("children_state: {top}"));
    assert_eq!(
        sorted(children.iter().map(|c| c["state_key"].as_str().expect("state_key").to_owned()).collect()),
        sorted(vec![s.a.clone(), s.b.clone(), s.sub.clone()]),
        "{top}"
    );
    for child in children {
        assert_eq!(child["type"], json!("m.space.child"), "{child}");
        assert_eq!(child["content"]["via"], json!(["localhost"]), "{child}");
        assert_eq!(child["sender"], json!(s.alice.user_id), "{child}");
        assert!(child["origin_server_ts"].is_u64(), "{child}");
    }
    let room_a = rooms.iter().find(|r| r["room_id"] == json!(s.a)).expect("room a");
    assert_eq!(room_a["name"], json!("Room A"));
    assert!(room_a.get("room_type").is_none() || room_a["room_type"].is_null(), "{room_a}");
    assert_eq!(room_a["children_state"], json!([]), "{room_a}");
}

#[tokio::test]
async fn hierarchy_max_depth() {
    let s = spaces().await;
    let body = assert_ok(s.alice.get(&hierarchy_path(&s.space, "?max_depth=0")).await);
    assert_eq!(room_ids(&body), vec![s.space.clone()], "{body}");

    let body = assert_ok(s.alice.get(&hierarchy_path(&s.space, "?max_depth=1")).await);
    assert_eq!(
        sorted(room_ids(&body)),
        sorted(vec![s.space.clone(), s.a.clone(), s.b.clone(), s.sub.clone()]),
        "room C is two levels down: {body}"
    );
}

#[tokio::test]
async fn hierarchy_paginates_with_limit_and_next_batch() {
    let s = spaces().await;
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for page in 0..10 {
        let query = match &from {
            Some(token) => format!("?limit=2&from={}", enc(token)),
            None => "?limit=2".to_owned(),
        };
        let body = assert_ok(s.alice.get(&hierarchy_path(&s.space, &query)).await);
        let got = room_ids(&body);
        assert!(!got.is_empty() && got.len() <= 2, "page {page}: {body}");
        seen.extend(got);
        from = body["next_batch"].as_str().map(str::to_owned);
        if from.is_none() {
            break;
        }
    }
    assert_eq!(seen.first(), Some(&s.space));
    assert_eq!(
        sorted(seen),
        sorted(vec![s.space.clone(), s.a.clone(), s.b.clone(), s.sub.clone(), s.c.clone()]),
        "every room exactly once across pages"
    );
    let body = assert_ok(s.alice.get(&hierarchy_path(&s.space, "?limit=2")).await);
    assert_eq!(room_ids(&body).len(), 2, "{body}");
    assert!(body["next_batch"].is_string(), "{body}");
}

#[tokio::test]
async fn hierarchy_suggested_only() {
    let s = spaces().await;
    let body = assert_ok(s.alice.get(&hierarchy_path(&s.space, "?suggested_only=true")).await);
    assert_eq!(room_ids(&body), vec![s.space.clone(), s.a.clone()], "{body}");
}

#[tokio::test]
async fn hierarchy_of_private_space_is_forbidden_to_non_members() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let space = create_space(&alice, "private_chat", "Private space").await;
    let child = create_private_room(&alice).await;
    add_child(&alice, &space, &child, false).await;

    assert_err(&bob.get(&hierarchy_path(&space, "")).await, 403, "M_FORBIDDEN");
    let body = assert_ok(alice.get(&hierarchy_path(&space, "")).await);
    assert_eq!(room_ids(&body), vec![space, child], "{body}");
}
