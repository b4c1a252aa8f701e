//! Room aliases (`/directory/room`, `/rooms/{id}/aliases`, join by alias)
//! and the public room directory (`/directory/list/room`, `/publicRooms`).

mod support;

use complement_tests::{Client, TestServer, assert_err, assert_ok, enc};
use serde_json::{Value, json};
use support::*;

// ------------------------------------------------------------------ aliases

#[tokio::test]
async fn alias_create_resolve_and_delete() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let path = alias_path("#coffee:localhost");

    assert_err(&alice.get(&path).await, 404, "M_NOT_FOUND");
    assert_eq!(assert_ok(alice.put(&path, json!({ "room_id": room })).await), json!({}));
    let body = assert_ok(alice.get(&path).await);
    assert_eq!(body["room_id"], json!(room), "{body}");
    assert_eq!(body["servers"], json!(["localhost"]), "{body}");
    // Any user can resolve it.
    let bob = server.register("bob", "password-b").await;
    assert_eq!(assert_ok(bob.get(&path).await)["room_id"], json!(room));

    assert_eq!(assert_ok(alice.delete(&path, None).await), json!({}));
    assert_err(&alice.get(&path).await, 404, "M_NOT_FOUND");
    assert_err(&alice.delete(&path, None).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn alias_already_taken_is_conflict() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room1 = create_public_room(&alice).await;
    let room2 = create_public_room(&alice).await;
    let path = alias_path("#taken:localhost");
    assert_ok(alice.put(&path, json!({ "room_id": room1 })).await);
    assert_err(&alice.put(&path, json!({ "room_id": room2 })).await, 409, "M_UNKNOWN");
    assert_err(&alice.put(&path, json!({ "room_id": room1 })).await, 409, "M_UNKNOWN");
    assert_eq!(assert_ok(alice.get(&path).await)["room_id"], json!(room1));
}

#[tokio::test]
async fn invalid_alias_is_invalid_param() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    for bad in ["nosigil:localhost", "#noserver", "!room:localhost"] {
        let resp = alice.put(&alias_path(bad), json!({ "room_id": room })).await;
        assert_err(&resp, 400, "M_INVALID_PARAM");
        assert_err(&alice.get(&alias_path(bad)).await, 400, "M_INVALID_PARAM");
    }
}

#[tokio::test]
async fn deleting_another_users_alias_is_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_public_room(&alice).await;
    let path = alias_path("#alices:localhost");
    assert_ok(alice.put(&path, json!({ "room_id": room })).await);
    assert_err(&bob.delete(&path, None).await, 403, "M_FORBIDDEN");
    join(&bob, &room).await;
    assert_err(&bob.delete(&path, None).await, 403, "M_FORBIDDEN");
    assert_eq!(assert_ok(alice.get(&path).await)["room_id"], json!(room));
}

#[tokio::test]
async fn room_aliases_lists_local_aliases_for_members() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_room(&alice, json!({ "preset": "public_chat", "room_alias_name": "first" })).await;
    assert_ok(alice.put(&alias_path("#second:localhost"), json!({ "room_id": room })).await);
    let path = format!("/_matrix/client/v3/rooms/{}/aliases", enc(&room));

    let body = assert_ok(alice.get(&path).await);
    let mut aliases: Vec<String> = body["aliases"]
        .as_array()
        .unwrap_or_else(|| panic!("aliases: {body}"))
        .iter()
        .map(|a| a.as_str().expect("string").to_owned())
        .collect();
    aliases.sort();
    assert_eq!(aliases, vec!["#first:localhost".to_owned(), "#second:localhost".to_owned()], "{body}");

    // bob is not in the room (history is not world_readable).
    assert_err(&bob.get(&path).await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn join_by_alias() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_room(&alice, json!({ "preset": "public_chat", "room_alias_name": "lobby" })).await;
    let body = assert_ok(bob.post("/_matrix/client/v3/join/%23lobby:localhost", json!({})).await);
    assert_eq!(body["room_id"], json!(room), "{body}");
    let member = get_state(&alice, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], json!("join"), "{member}");

    let resp = bob.post("/_matrix/client/v3/join/%23nosuchalias:localhost", json!({})).await;
    assert_err(&resp, 404, "M_NOT_FOUND");
}

// ----------------------------------------------------------- room directory

fn visibility_path(room: &str) -> String {
    format!("/_matrix/client/v3/directory/list/room/{}", enc(room))
}

fn public_ids(body: &Value) -> Vec<String> {
    body["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk: {body}"))
        .iter()
        .map(|r| r["room_id"].as_str().unwrap_or_else(|| panic!("room_id: {r}")).to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn directory_visibility_get_and_put() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let published = create_room(&alice, json!({ "preset": "public_chat", "visibility": "public" })).await;
    let unpublished = create_public_room(&alice).await;

    // GET needs no membership (any user, or none at all).
    let anon = server.client();
    assert_eq!(assert_ok(anon.get(&visibility_path(&published)).await), json!({ "visibility": "public" }));
    assert_eq!(assert_ok(alice.get(&visibility_path(&unpublished)).await), json!({ "visibility": "private" }));
    assert_err(&alice.get(&visibility_path("!nosuchroom:localhost")).await, 404, "M_NOT_FOUND");

    let body = assert_ok(alice.get("/_matrix/client/v3/publicRooms").await);
    assert_eq!(public_ids(&body), vec![published.clone()], "{body}");

    assert_eq!(
        assert_ok(alice.put(&visibility_path(&unpublished), json!({ "visibility": "public" })).await),
        json!({})
    );
    assert_ok(alice.put(&visibility_path(&published), json!({ "visibility": "private" })).await);
    assert_eq!(assert_ok(alice.get(&visibility_path(&published)).await), json!({ "visibility": "private" }));
    let body = assert_ok(alice.get("/_matrix/client/v3/publicRooms").await);
    assert_eq!(public_ids(&body), vec![unpublished], "{body}");
}

async fn published_room(alice: &Client, name: &str, topic: &str, alias: &str) -> String {
    create_room(
        alice,
        json!({
            "preset": "public_chat",
            "visibility": "public",
            "name": name,
            "topic": topic,
            "room_alias_name": alias,
        }),
    )
    .await
}

#[tokio::test]
async fn public_rooms_entries_describe_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = published_room(&alice, "Gardening", "All about plants", "garden").await;
    join(&bob, &room).await;

    let body = assert_ok(server.client().get("/_matrix/client/v3/publicRooms").await);
    let entry = &body["chunk"][0];
    assert_eq!(entry["room_id"], json!(room), "{body}");
    assert_eq!(entry["name"], json!("Gardening"));
    assert_eq!(entry["topic"], json!("All about plants"));
    assert_eq!(entry["canonical_alias"], json!("#garden:localhost"));
    assert_eq!(entry["num_joined_members"], json!(2));
    assert_eq!(entry["world_readable"], json!(false));
    assert_eq!(entry["guest_can_join"], json!(false));
    assert_eq!(entry["join_rule"], json!("public"));
}

#[tokio::test]
async fn public_rooms_paginate_with_limit_and_since() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let mut rooms = Vec::new();
    for i in 0..5 {
        rooms.push(published_room(&alice, &format!("Room {i}"), "t", &format!("r{i}")).await);
    }

    for method in ["GET", "POST"] {
        let mut seen = Vec::new();
        let mut since: Option<String> = None;
        for page in 0..3 {
            let body = if method == "GET" {
                let query = match &since {
                    Some(token) => format!("?limit=2&since={}", enc(token)),
                    None => "?limit=2".to_owned(),
                };
                assert_ok(alice.get(&format!("/_matrix/client/v3/publicRooms{query}")).await)
            } else {
                let mut req = json!({ "limit": 2 });
                if let Some(token) = &since {
                    req["since"] = json!(token);
                }
                assert_ok(alice.post("/_matrix/client/v3/publicRooms", req).await)
            };
            let got = public_ids(&body);
            assert_eq!(got.len(), if page < 2 { 2 } else { 1 }, "{method} page {page}: {body}");
            seen.extend(got);
            since = body["next_batch"].as_str().map(str::to_owned);
            if page < 2 {
                assert!(since.is_some(), "{method} page {page} must have next_batch: {body}");
            } else {
                assert!(since.is_none(), "{method} last page has no next_batch: {body}");
            }
            if page > 0 {
                assert!(body["prev_batch"].is_string(), "{method} page {page} has prev_batch: {body}");
            }
        }
        assert_eq!(sorted(seen), sorted(rooms.clone()), "{method}: every room exactly once");
    }
}

#[tokio::test]
async fn public_rooms_generic_search_term() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let cooking = published_room(&alice, "Cooking Club", "recipes", "cooking").await;
    let _chess = published_room(&alice, "Chess", "openings and endgames", "chess").await;
    let by_topic = published_room(&alice, "Kitchen", "cooking tips", "kitchen").await;

    let body = assert_ok(
        alice.post("/_matrix/client/v3/publicRooms", json!({ "filter": { "generic_search_term": "cook" } })).await,
    );
    assert_eq!(sorted(public_ids(&body)), sorted(vec![cooking.clone(), by_topic]), "name or topic: {body}");

    let body = assert_ok(
        alice.post("/_matrix/client/v3/publicRooms", json!({ "filter": { "generic_search_term": "CLUB" } })).await,
    );
    assert_eq!(public_ids(&body), vec![cooking], "case-insensitive: {body}");

    let body = assert_ok(
        alice.post("/_matrix/client/v3/publicRooms", json!({ "filter": { "generic_search_term": "nothing" } })).await,
    );
    assert_eq!(public_ids(&body), Vec::<String>::new(), "{body}");
}

#[tokio::test]
async fn public_rooms_count_joined_members() {
    // Since v1.19 the order is up to the server, so entries are looked up by room id.
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let carol = server.register("carol", "password-c").await;
    let small = published_room(&alice, "Small", "t", "small").await;
    let big = published_room(&alice, "Big", "t", "big").await;
    join(&bob, &big).await;
    join(&carol, &big).await;
    join(&bob, &small).await;
    leave(&bob, &small).await;
    let body = assert_ok(alice.get("/_matrix/client/v3/publicRooms").await);
    let entry = |room: &str| -> Value {
        body["chunk"]
            .as_array()
            .and_then(|c| c.iter().find(|r| r["room_id"] == json!(room)).cloned())
            .unwrap_or_else(|| panic!("{room} not listed: {body}"))
    };
    assert_eq!(entry(&big)["num_joined_members"], json!(3), "{body}");
    assert_eq!(entry(&small)["num_joined_members"], json!(1), "a member who left is not counted: {body}");
}
