//! History visibility (`joined`, `invited`, `shared`, `world_readable`, and
//! leaving) as seen through `/messages` and `/event`, and ignored users.

mod support;

use complement_tests::{Client, TestServer, assert_err, assert_ok, enc};
use serde_json::json;
use support::*;

async fn room_with_visibility(alice: &Client, preset: &str, visibility: &str) -> String {
    let room = create_room(
        alice,
        json!({
            "preset": preset,
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": { "history_visibility": visibility },
            }],
        }),
    )
    .await;
    let state = get_state(alice, &room, "m.room.history_visibility", "").await;
    assert_eq!(state["history_visibility"], json!(visibility), "{state}");
    room
}

/// The message bodies `client` sees in the room via `/messages` (oldest first).
async fn visible_bodies(client: &Client, room: &str) -> Vec<String> {
    let mut bodies = message_bodies(&messages(client, room).await);
    bodies.reverse();
    bodies
}

async fn assert_event_hidden(client: &Client, room: &str, event: &str) {
    assert_err(&get_event_raw(client, room, event).await, 404, "M_NOT_FOUND");
}

async fn assert_event_visible(client: &Client, room: &str, event: &str) {
    let body = assert_ok(get_event_raw(client, room, event).await);
    assert_eq!(body["event_id"], json!(event), "{body}");
}

#[tokio::test]
async fn joined_visibility_hides_history_before_join() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = room_with_visibility(&alice, "public_chat", "joined").await;
    let before = send_text(&alice, &room, "before join").await;
    join(&bob, &room).await;
    let after = send_text(&alice, &room, "after join").await;

    assert_eq!(visible_bodies(&bob, &room).await, vec!["after join".to_owned()]);
    assert_event_hidden(&bob, &room, &before).await;
    assert_event_visible(&bob, &room, &after).await;
    assert_eq!(visible_bodies(&alice, &room).await, vec!["before join".to_owned(), "after join".to_owned()]);
}

#[tokio::test]
async fn invited_visibility_shows_history_from_invite() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = room_with_visibility(&alice, "private_chat", "invited").await;
    let before = send_text(&alice, &room, "before invite").await;
    invite(&alice, &room, &bob.user_id).await;
    let invited = send_text(&alice, &room, "while invited").await;
    join(&bob, &room).await;
    let joined = send_text(&alice, &room, "after join").await;

    assert_eq!(visible_bodies(&bob, &room).await, vec!["while invited".to_owned(), "after join".to_owned()]);
    assert_event_hidden(&bob, &room, &before).await;
    assert_event_visible(&bob, &room, &invited).await;
    assert_event_visible(&bob, &room, &joined).await;
}

#[tokio::test]
async fn joined_visibility_hides_messages_sent_while_only_invited() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = room_with_visibility(&alice, "private_chat", "joined").await;
    invite(&alice, &room, &bob.user_id).await;
    let invited = send_text(&alice, &room, "while invited").await;
    join(&bob, &room).await;
    send_text(&alice, &room, "after join").await;
    assert_eq!(visible_bodies(&bob, &room).await, vec!["after join".to_owned()]);
    assert_event_hidden(&bob, &room, &invited).await;
}

#[tokio::test]
async fn shared_visibility_shows_all_history_to_members() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let carol = server.register("carol", "password-c").await;
    let room = room_with_visibility(&alice, "public_chat", "shared").await;
    let before = send_text(&alice, &room, "before join").await;
    join(&bob, &room).await;
    send_text(&alice, &room, "after join").await;

    assert_eq!(visible_bodies(&bob, &room).await, vec!["before join".to_owned(), "after join".to_owned()]);
    assert_event_visible(&bob, &room, &before).await;

    // carol never joined: nothing is visible to her.
    assert_event_hidden(&carol, &room, &before).await;
    let resp = messages_raw(&carol, &room, "b", 10, "").await;
    assert_eq!(resp.0.as_u16(), 403, "non-member /messages: {}", resp.1);
}

#[tokio::test]
async fn world_readable_visibility_shows_history_to_anyone() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let carol = server.register("carol", "password-c").await;
    let room = room_with_visibility(&alice, "public_chat", "world_readable").await;
    let first = send_text(&alice, &room, "first").await;
    send_text(&alice, &room, "second").await;

    // carol is not a member and still reads everything.
    assert_event_visible(&carol, &room, &first).await;
    assert_eq!(visible_bodies(&carol, &room).await, vec!["first".to_owned(), "second".to_owned()]);

    join(&bob, &room).await;
    assert_eq!(visible_bodies(&bob, &room).await, vec!["first".to_owned(), "second".to_owned()]);
}

#[tokio::test]
async fn user_who_left_does_not_see_later_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = room_with_visibility(&alice, "public_chat", "shared").await;
    join(&bob, &room).await;
    let during = send_text(&alice, &room, "while bob is here").await;
    leave(&bob, &room).await;
    let after = send_text(&alice, &room, "after bob left").await;

    assert_event_visible(&bob, &room, &during).await;
    assert_event_hidden(&bob, &room, &after).await;
    let bodies = visible_bodies(&bob, &room).await;
    assert!(bodies.contains(&"while bob is here".to_owned()), "{bodies:?}");
    assert!(!bodies.contains(&"after bob left".to_owned()), "{bodies:?}");
}

#[tokio::test]
async fn ignored_users_messages_are_hidden_from_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let carol = server.register("carol", "password-c").await;
    let room = create_public_room(&alice).await;
    join(&bob, &room).await;
    join(&carol, &room).await;
    send_text(&bob, &room, "bob one").await;
    send_text(&carol, &room, "carol one").await;

    // Read once before ignoring: the (empty) list read then must not outlive the change.
    assert_eq!(visible_bodies(&alice, &room).await, vec!["bob one".to_owned(), "carol one".to_owned()]);
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", enc(&alice.user_id));
    assert_ok(alice.put(&path, json!({ "ignored_users": { bob.user_id.clone(): {} } })).await);
    send_text(&bob, &room, "bob two").await;
    send_text(&carol, &room, "carol two").await;

    let events = messages(&alice, &room).await;
    assert!(
        events.iter().all(|e| e["sender"] != json!(bob.user_id) || e.get("state_key").is_some()),
        "no non-state events from the ignored user (state events are still sent): {events:?}"
    );
    assert_eq!(visible_bodies(&alice, &room).await, vec!["carol one".to_owned(), "carol two".to_owned()]);

    // Others still see bob, and un-ignoring shows him again.
    assert_eq!(
        visible_bodies(&carol, &room).await,
        vec!["bob one".to_owned(), "carol one".to_owned(), "bob two".to_owned(), "carol two".to_owned()]
    );
    assert_ok(alice.put(&path, json!({ "ignored_users": {} })).await);
    assert_eq!(visible_bodies(&alice, &room).await.len(), 4);
}
