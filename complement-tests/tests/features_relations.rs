//! Relations (`/relations`), edits, threads (`/threads` and the `m.thread`
//! aggregation), references and reactions.

mod support;

use complement_tests::{Client, TestServer, assert_err, assert_ok, enc};
use serde_json::{Value, json};
use support::*;

fn relations_path(room: &str, event: &str, suffix: &str) -> String {
    format!("/_matrix/client/v1/rooms/{}/relations/{}{suffix}", enc(room), enc(event))
}

async fn relations(client: &Client, room: &str, event: &str, suffix: &str) -> Value {
    assert_ok(client.get(&relations_path(room, event, suffix)).await)
}

async fn react(client: &Client, room: &str, target: &str, key: &str) -> String {
    let content = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": target, "key": key } });
    send_event(client, room, "m.reaction", content).await
}

async fn thread_reply(client: &Client, room: &str, root: &str, text: &str) -> String {
    let content = json!({
        "msgtype": "m.text",
        "body": text,
        "m.relates_to": { "rel_type": "m.thread", "event_id": root },
    });
    send_event(client, room, "m.room.message", content).await
}

async fn reference(client: &Client, room: &str, target: &str) -> String {
    let content = json!({ "msgtype": "m.text", "body": "ref", "m.relates_to": { "rel_type": "m.reference", "event_id": target } });
    send_event(client, room, "m.room.message", content).await
}

async fn edit(client: &Client, room: &str, target: &str, text: &str) -> String {
    let content = json!({
        "msgtype": "m.text",
        "body": format!("* {text}"),
        "m.new_content": { "msgtype": "m.text", "body": text },
        "m.relates_to": { "rel_type": "m.replace", "event_id": target },
    });
    send_event(client, room, "m.room.message", content).await
}

/// A room with alice and bob and a root message with one relation of each type.
struct Fixture {
    _server: TestServer,
    alice: Client,
    room: String,
    root: String,
    reaction: String,
    thread: String,
    reference: String,
    edit: String,
}

async fn fixture() -> Fixture {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let root = send_text(&alice, &room, "root").await;
    let reaction = react(&alice, &room, &root, "👍").await;
    let thread = thread_reply(&alice, &room, &root, "in thread").await;
    let reference = reference(&alice, &room, &root).await;
    let edit = edit(&alice, &room, &root, "root edited").await;
    Fixture { _server: server, alice, room, root, reaction, thread, reference, edit }
}

#[tokio::test]
async fn relations_lists_all_children_newest_first_by_default() {
    let f = fixture().await;
    let unrelated = send_text(&f.alice, &f.room, "unrelated").await;
    let body = relations(&f.alice, &f.room, &f.root, "").await;
    let ids = chunk_ids(&body);
    assert_eq!(ids, vec![f.edit.clone(), f.reference.clone(), f.thread.clone(), f.reaction.clone()], "{body}");
    assert!(!ids.contains(&unrelated));
    assert!(body.get("next_batch").is_none(), "no more pages: {body}");
    assert!(body.get("recursion_depth").is_none(), "recursion_depth must be absent without recurse: {body}");

    let body = relations(&f.alice, &f.room, &f.root, "?dir=f").await;
    assert_eq!(chunk_ids(&body), vec![f.reaction, f.thread, f.reference, f.edit], "{body}");
}

#[tokio::test]
async fn relations_filtered_by_rel_type_and_event_type() {
    let f = fixture().await;
    let body = relations(&f.alice, &f.room, &f.root, "/m.annotation").await;
    assert_eq!(chunk_ids(&body), vec![f.reaction.clone()], "{body}");
    let reaction = &chunk(&body)[0];
    assert_eq!(reaction["type"], json!("m.reaction"));
    assert_eq!(reaction["content"]["m.relates_to"]["key"], json!("👍"));

    let body = relations(&f.alice, &f.room, &f.root, "/m.annotation/m.reaction").await;
    assert_eq!(chunk_ids(&body), vec![f.reaction.clone()], "{body}");
    let body = relations(&f.alice, &f.room, &f.root, "/m.annotation/m.room.message").await;
    assert_eq!(chunk_ids(&body), Vec::<String>::new(), "{body}");

    let body = relations(&f.alice, &f.room, &f.root, "/m.thread").await;
    assert_eq!(chunk_ids(&body), vec![f.thread.clone()], "{body}");
    let body = relations(&f.alice, &f.room, &f.root, "/m.reference").await;
    assert_eq!(chunk_ids(&body), vec![f.reference.clone()], "{body}");
    let body = relations(&f.alice, &f.room, &f.root, "/m.replace/m.room.message").await;
    assert_eq!(chunk_ids(&body), vec![f.edit.clone()], "{body}");
}

#[tokio::test]
async fn relations_paginate_with_limit_and_next_batch() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let root = send_text(&alice, &room, "root").await;
    let mut sent = Vec::new();
    for key in ["a", "b", "c", "d", "e"] {
        sent.push(react(&alice, &room, &root, key).await);
    }
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();

    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for page in 0..3 {
        let query = match &from {
            Some(token) => format!("?limit=2&from={}", enc(token)),
            None => "?limit=2".to_owned(),
        };
        let body = relations(&alice, &room, &root, &query).await;
        let ids = chunk_ids(&body);
        let expected = if page < 2 { 2 } else { 1 };
        assert_eq!(ids.len(), expected, "page {page}: {body}");
        seen.extend(ids);
        from = body["next_batch"].as_str().map(str::to_owned);
        if page < 2 {
            assert!(from.is_some(), "page {page} must have next_batch: {body}");
        } else {
            assert!(from.is_none(), "last page must not have next_batch: {body}");
        }
    }
    assert_eq!(seen, newest_first);

    // Forwards pagination visits them oldest first.
    let body = relations(&alice, &room, &root, "?dir=f&limit=3").await;
    assert_eq!(chunk_ids(&body), sent[..3].to_vec(), "{body}");
    let token = body["next_batch"].as_str().unwrap_or_else(|| panic!("next_batch expected: {body}")).to_owned();
    let body = relations(&alice, &room, &root, &format!("?dir=f&limit=3&from={}", enc(&token))).await;
    assert_eq!(chunk_ids(&body), sent[3..].to_vec(), "{body}");
}

#[tokio::test]
async fn relations_recurse_includes_indirect_children() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let root = send_text(&alice, &room, "root").await;
    let reply = thread_reply(&alice, &room, &root, "reply").await;
    let reaction_on_reply = react(&alice, &room, &reply, "🎉").await;

    let body = relations(&alice, &room, &root, "").await;
    assert_eq!(chunk_ids(&body), vec![reply.clone()], "{body}");
    assert!(body.get("recursion_depth").is_none(), "{body}");

    let body = relations(&alice, &room, &root, "?recurse=true").await;
    let mut ids = chunk_ids(&body);
    ids.sort();
    let mut expected = vec![reply.clone(), reaction_on_reply.clone()];
    expected.sort();
    assert_eq!(ids, expected, "{body}");
    let depth = body["recursion_depth"].as_u64().unwrap_or_else(|| panic!("recursion_depth required: {body}"));
    assert!(depth >= 2, "recursed at least two levels to find the reaction: {body}");

    // With a rel_type filter the indirect reaction (m.annotation) is found, the thread reply is not.
    let body = relations(&alice, &room, &root, "/m.annotation?recurse=true").await;
    assert_eq!(chunk_ids(&body), vec![reaction_on_reply], "{body}");
    assert!(body["recursion_depth"].is_u64(), "{body}");
}

#[tokio::test]
async fn relations_of_unknown_or_invisible_event_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_private_room(&alice).await;
    let root = send_text(&alice, &room, "secret").await;
    assert_err(&alice.get(&relations_path(&room, "$nosuchevent", "")).await, 404, "M_NOT_FOUND");
    // bob is not in the (private, shared-history) room: he cannot read the parent.
    assert_err(&bob.get(&relations_path(&room, &root, "")).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn edit_is_bundled_on_original_in_event_and_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let original = send_text(&alice, &room, "original").await;
    let first_edit = edit(&alice, &room, &original, "edit one").await;
    let latest_edit = edit(&alice, &room, &original, "edit two").await;

    let event = assert_ok(get_event_raw(&alice, &room, &original).await);
    let replace = &event["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(replace["event_id"], json!(latest_edit), "latest edit must be bundled: {event}");
    assert_ne!(replace["event_id"], json!(first_edit));
    assert_eq!(replace["type"], json!("m.room.message"), "the full edit event is bundled: {event}");
    assert_eq!(replace["sender"], json!(alice.user_id));
    assert_eq!(replace["content"]["m.new_content"]["body"], json!("edit two"), "{event}");
    // Servers no longer apply the edit to the original's content.
    assert_eq!(event["content"]["body"], json!("original"), "{event}");

    let events = messages(&alice, &room).await;
    let in_timeline =
        find_event(&events, &original).unwrap_or_else(|| panic!("original not in /messages: {events:?}")).clone();
    assert_eq!(in_timeline["unsigned"]["m.relations"]["m.replace"]["event_id"], json!(latest_edit), "{in_timeline}");
    assert_eq!(in_timeline["content"]["body"], json!("original"));
}

#[tokio::test]
async fn reference_aggregation_lists_referencing_events() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let target = send_text(&alice, &room, "target").await;
    let one = reference(&alice, &room, &target).await;
    let two = reference(&alice, &room, &target).await;

    let event = assert_ok(get_event_raw(&alice, &room, &target).await);
    let refs = event["unsigned"]["m.relations"]["m.reference"]["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("m.reference aggregation missing: {event}"))
        .clone();
    let mut ids: Vec<String> = refs.iter().map(|r| r["event_id"].as_str().expect("event_id").to_owned()).collect();
    ids.sort();
    let mut expected = vec![one, two];
    expected.sort();
    assert_eq!(ids, expected, "{event}");
}

#[tokio::test]
async fn thread_aggregation_on_root() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let carol = server.register("carol", "password-c").await;
    let room = create_public_room(&alice).await;
    join(&bob, &room).await;
    join(&carol, &room).await;
    let root = send_text(&alice, &room, "thread root").await;
    thread_reply(&bob, &room, &root, "first reply").await;
    let latest = thread_reply(&bob, &room, &root, "second reply").await;

    for (who, participated) in [(&alice, true), (&bob, true), (&carol, false)] {
        let event = assert_ok(get_event_raw(who, &room, &root).await);
        let thread = &event["unsigned"]["m.relations"]["m.thread"];
        assert_eq!(thread["count"], json!(2), "{} sees {event}", who.user_id);
        assert_eq!(thread["latest_event"]["event_id"], json!(latest), "{event}");
        assert_eq!(thread["latest_event"]["content"]["body"], json!("second reply"), "{event}");
        assert_eq!(thread["current_user_participated"], json!(participated), "{} sees {event}", who.user_id);
    }

    let events = messages(&carol, &room).await;
    let root_event = find_event(&events, &root).unwrap_or_else(|| panic!("root not in /messages: {events:?}"));
    assert_eq!(root_event["unsigned"]["m.relations"]["m.thread"]["count"], json!(2), "{root_event}");
}

#[tokio::test]
async fn threads_endpoint_lists_roots_with_include_and_paging() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_public_room(&alice).await;
    join(&bob, &room).await;
    let path = |query: &str| format!("/_matrix/client/v1/rooms/{}/threads{query}", enc(&room));

    let t1 = send_text(&alice, &room, "thread one").await;
    let t2 = send_text(&alice, &room, "thread two").await;
    let t3 = send_text(&alice, &room, "thread three").await;
    let _plain = send_text(&alice, &room, "not a thread").await;
    thread_reply(&alice, &room, &t2, "reply 2").await;
    thread_reply(&alice, &room, &t3, "reply 3").await;
    // bob participates only in thread one, which becomes the most recently active.
    thread_reply(&bob, &room, &t1, "reply 1").await;

    let body = assert_ok(alice.get(&path("")).await);
    assert_eq!(chunk_ids(&body), vec![t1.clone(), t3.clone(), t2.clone()], "most recent activity first: {body}");
    assert!(body.get("next_batch").is_none(), "{body}");
    let first = &chunk(&body)[0];
    assert_eq!(first["unsigned"]["m.relations"]["m.thread"]["count"], json!(1), "roots carry aggregations: {first}");

    let body = assert_ok(alice.get(&path("?include=all")).await);
    assert_eq!(chunk_ids(&body), vec![t1.clone(), t3.clone(), t2.clone()], "{body}");

    let body = assert_ok(bob.get(&path("?include=participated")).await);
    assert_eq!(chunk_ids(&body), vec![t1.clone()], "{body}");
    // alice sent every root, so she participated in all of them.
    let body = assert_ok(alice.get(&path("?include=participated")).await);
    assert_eq!(chunk_ids(&body).len(), 3, "{body}");

    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for page in 0..3 {
        let query = match &from {
            Some(token) => format!("?limit=1&from={}", enc(token)),
            None => "?limit=1".to_owned(),
        };
        let body = assert_ok(alice.get(&path(&query)).await);
        assert_eq!(chunk(&body).len(), 1, "page {page}: {body}");
        seen.extend(chunk_ids(&body));
        from = body["next_batch"].as_str().map(str::to_owned);
        if page < 2 {
            assert!(from.is_some(), "page {page} must have next_batch: {body}");
        }
    }
    assert_eq!(seen, vec![t1, t3, t2]);
    if let Some(token) = from {
        let body = assert_ok(alice.get(&path(&format!("?limit=1&from={}", enc(&token)))).await);
        assert_eq!(chunk(&body).len(), 0, "{body}");
        assert!(body.get("next_batch").is_none(), "{body}");
    }
}

#[tokio::test]
async fn reactions_are_listed_by_relations_with_sender_and_key() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_public_room(&alice).await;
    join(&bob, &room).await;
    let target = send_text(&alice, &room, "react to me").await;
    let r1 = react(&alice, &room, &target, "👍").await;
    let r2 = react(&bob, &room, &target, "👍").await;
    let r3 = react(&bob, &room, &target, "❤️").await;

    let body = relations(&bob, &room, &target, "/m.annotation/m.reaction?dir=f").await;
    let events = chunk(&body);
    assert_eq!(ids(&events), vec![r1, r2, r3], "{body}");
    let senders_keys: Vec<(Value, Value)> =
        events.iter().map(|e| (e["sender"].clone(), e["content"]["m.relates_to"]["key"].clone())).collect();
    assert_eq!(
        senders_keys,
        vec![(json!(alice.user_id), json!("👍")), (json!(bob.user_id), json!("👍")), (json!(bob.user_id), json!("❤️")),]
    );
}

#[tokio::test]
async fn threads_endpoint_errors() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_private_room(&alice).await;
    let root = send_text(&alice, &room, "root").await;
    thread_reply(&alice, &room, &root, "reply").await;
    let path = |query: &str| format!("/_matrix/client/v1/rooms/{}/threads{query}", enc(&room));
    assert_err(&alice.get(&path("?include=bogus")).await, 400, "M_INVALID_PARAM");
    // bob cannot view or peek on the private room.
    assert_err(&bob.get(&path("")).await, 403, "M_FORBIDDEN");
}
