//! Membership features: knocking, restricted joins and guest access.

mod support;

use complement_tests::{Client, TestServer, assert_err, assert_ok, enc};
use serde_json::json;
use support::*;

// ---------------------------------------------------------------- knocking

async fn knock_room(alice: &Client, version: Option<&str>) -> String {
    let mut body = json!({
        "preset": "private_chat",
        "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }],
    });
    if let Some(v) = version {
        body["room_version"] = json!(v);
    }
    create_room(alice, body).await
}

fn knock_path(room: &str) -> String {
    format!("/_matrix/client/v3/knock/{}", enc(room))
}

#[tokio::test]
async fn knock_then_invite_then_join() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = knock_room(&alice, None).await;

    // bob cannot simply join a knock room.
    assert_err(&join_raw(&bob, &room).await, 403, "M_FORBIDDEN");

    let body = assert_ok(bob.post(&knock_path(&room), json!({ "reason": "let me in" })).await);
    assert_eq!(body, json!({ "room_id": room }));
    let member = get_state(&alice, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], json!("knock"), "{member}");
    assert_eq!(member["reason"], json!("let me in"), "{member}");

    invite(&alice, &room, &bob.user_id).await;
    let member = get_state(&alice, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], json!("invite"), "{member}");
    join(&bob, &room).await;
    let member = get_state(&alice, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], json!("join"), "{member}");
}

#[tokio::test]
async fn knock_works_from_room_version_7() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = knock_room(&alice, Some("7")).await;
    assert_ok(bob.post(&knock_path(&room), json!({})).await);
    let member = get_state(&alice, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], json!("knock"), "{member}");
}

#[tokio::test]
async fn knock_in_room_version_6_is_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = knock_room(&alice, Some("6")).await;
    assert_err(&bob.post(&knock_path(&room), json!({})).await, 403, "M_FORBIDDEN");
    assert_err(&get_state_raw(&alice, &room, "m.room.member", &bob.user_id).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn knock_on_invite_only_room_is_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_private_room(&alice).await;
    assert_err(&bob.post(&knock_path(&room), json!({})).await, 403, "M_FORBIDDEN");
}

// -------------------------------------------------------- restricted joins

async fn restricted_room(alice: &Client, version: &str, allowed_room: &str) -> String {
    create_room(
        alice,
        json!({
            "preset": "private_chat",
            "room_version": version,
            "initial_state": [{
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{ "type": "m.room_membership", "room_id": allowed_room }],
                },
            }],
        }),
    )
    .await
}

async fn restricted_join_scenario(version: &str) {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let carol = server.register("carol", "password-c").await;
    let a = create_public_room(&alice).await;
    join(&bob, &a).await;
    let b = restricted_room(&alice, version, &a).await;
    let rules = get_state(&alice, &b, "m.room.join_rules", "").await;
    assert_eq!(rules["join_rule"], json!("restricted"), "{rules}");

    // carol is not in A.
    assert_err(&join_raw(&carol, &b).await, 403, "M_FORBIDDEN");
    assert_err(&get_state_raw(&alice, &b, "m.room.member", &carol.user_id).await, 404, "M_NOT_FOUND");

    join(&bob, &b).await;
    let member = get_state(&alice, &b, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], json!("join"), "{member}");
    assert_eq!(member["join_authorised_via_users_server"], json!(alice.user_id), "{member}");

    // After joining A, carol can join too.
    join(&carol, &a).await;
    join(&carol, &b).await;
}

#[tokio::test]
async fn restricted_join_in_room_version_8() {
    restricted_join_scenario("8").await;
}

#[tokio::test]
async fn restricted_join_in_room_version_10() {
    restricted_join_scenario("10").await;
}

#[tokio::test]
async fn restricted_join_in_default_room_version() {
    restricted_join_scenario("12").await;
}

#[tokio::test]
async fn restricted_join_of_invited_user_needs_no_authorisation() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let carol = server.register("carol", "password-c").await;
    let a = create_private_room(&alice).await;
    let b = restricted_room(&alice, "10", &a).await;
    invite(&alice, &b, &carol.user_id).await;
    join(&carol, &b).await;
    let member = get_state(&alice, &b, "m.room.member", &carol.user_id).await;
    assert_eq!(member["membership"], json!("join"), "{member}");
}

// ------------------------------------------------------------------- guests

async fn guest_server() -> TestServer {
    TestServer::builder().env("KITH_REGISTRATION__ALLOW_GUESTS", "true").start().await
}

async fn register_guest(server: &TestServer) -> Client {
    let client = server.client();
    let body = assert_ok(client.post("/_matrix/client/v3/register?kind=guest", json!({})).await);
    client.logged_in(&body)
}

#[tokio::test]
async fn guest_can_join_room_with_can_join_guest_access() {
    let server = guest_server().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_room(
        &alice,
        json!({
            "preset": "public_chat",
            "initial_state": [{ "type": "m.room.guest_access", "state_key": "", "content": { "guest_access": "can_join" } }],
        }),
    )
    .await;
    let guest = register_guest(&server).await;
    join(&guest, &room).await;
    let member = get_state(&alice, &room, "m.room.member", &guest.user_id).await;
    assert_eq!(member["membership"], json!("join"), "{member}");
    let event = send_text(&guest, &room, "hello from a guest").await;
    let got = assert_ok(get_event_raw(&alice, &room, &event).await);
    assert_eq!(got["sender"], json!(guest.user_id));
}

#[tokio::test]
async fn guest_cannot_join_room_with_forbidden_guest_access() {
    let server = guest_server().await;
    let alice = server.register("alice", "password-a").await;
    let explicit = create_room(
        &alice,
        json!({
            "preset": "public_chat",
            "initial_state": [{ "type": "m.room.guest_access", "state_key": "", "content": { "guest_access": "forbidden" } }],
        }),
    )
    .await;
    // public_chat sets guest_access "forbidden".
    let default = create_public_room(&alice).await;
    let guest = register_guest(&server).await;
    assert_err(&join_raw(&guest, &explicit).await, 403, "M_FORBIDDEN");
    assert_err(&join_raw(&guest, &default).await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn guest_cannot_create_rooms() {
    let server = guest_server().await;
    let guest = register_guest(&server).await;
    let resp = guest.post("/_matrix/client/v3/createRoom", json!({ "preset": "public_chat" })).await;
    assert_err(&resp, 403, "M_GUEST_ACCESS_FORBIDDEN");
}
