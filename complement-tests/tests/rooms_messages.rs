//! Sending events (transaction ids, permissions), fetching them, message
//! kinds round-tripping, and `/messages` pagination and filters.

use complement_tests::client::new_txn_id;
use complement_tests::{Client, TestServer, assert_err, assert_ok, enc};
use serde_json::{Value, json};

fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["event_id"].as_str().expect("event_id").to_owned()).collect()
}

#[tokio::test]
async fn same_txn_id_same_device_gives_the_same_event_also_after_restart() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let content = json!({ "msgtype": "m.text", "body": "once" });

    let first = alice.send_event_raw(&room, "m.room.message", "txn-1", content.clone()).await;
    let first_id = assert_ok(first)["event_id"].as_str().expect("event_id").to_owned();
    let again = assert_ok(alice.send_event_raw(&room, "m.room.message", "txn-1", content.clone()).await);
    assert_eq!(again["event_id"], json!(first_id), "a retried transaction must return the same event");

    // Another txn id is another event.
    let other = assert_ok(alice.send_event_raw(&room, "m.room.message", "txn-2", content.clone()).await);
    assert_ne!(other["event_id"], json!(first_id));

    // Another device of the same user with the same txn id: a new event.
    let second_device = server.client().login("alice", "password-a").await;
    let from_other_device =
        assert_ok(second_device.send_event_raw(&room, "m.room.message", "txn-1", content.clone()).await);
    assert_ne!(from_other_device["event_id"], json!(first_id), "transaction ids are scoped to a device");

    server.restart().await;
    let alice = Client { base: server.base_url().to_owned(), http: server.client().http, ..alice };
    let after = assert_ok(alice.send_event_raw(&room, "m.room.message", "txn-1", content.clone()).await);
    assert_eq!(after["event_id"], json!(first_id), "transaction ids must survive a restart");

    let messages = alice.paginate_all(&room, "b", 100, Some(&json!({ "types": ["m.room.message"] })), 10).await;
    assert_eq!(messages.len(), 3, "exactly three messages were created: {messages:?}");
}

#[tokio::test]
async fn own_events_carry_their_transaction_id() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let other_device = server.client().login("alice", "password-a").await;
    let room = alice.create_room(json!({})).await;
    let sent = assert_ok(
        alice.send_event_raw(&room, "m.room.message", "my-txn", json!({ "msgtype": "m.text", "body": "x" })).await,
    );
    let event_id = sent["event_id"].as_str().expect("event_id");
    // client_event.yaml: unsigned.transaction_id "if the client being given the event is the same one which sent it".
    let event = assert_ok(alice.get_event(&room, event_id).await);
    assert_eq!(event["unsigned"]["transaction_id"], json!("my-txn"), "GET /event to the sending device: {event}");
    let page = alice.messages(&room, "dir=b&limit=1").await;
    assert_eq!(
        page["chunk"][0]["unsigned"]["transaction_id"],
        json!("my-txn"),
        "/messages to the sending device: {page}"
    );
    let event = assert_ok(other_device.get_event(&room, event_id).await);
    assert!(event["unsigned"].get("transaction_id").is_none(), "another device must not get the txn id: {event}");
}

#[tokio::test]
async fn the_same_txn_id_on_another_path_is_a_new_request() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room_a = alice.create_room(json!({})).await;
    let room_b = alice.create_room(json!({})).await;
    let content = json!({ "msgtype": "m.text", "body": "x" });
    let a = assert_ok(alice.send_event_raw(&room_a, "m.room.message", "same", content.clone()).await);
    let b = assert_ok(alice.send_event_raw(&room_b, "m.room.message", "same", content.clone()).await);
    assert_ne!(a["event_id"], b["event_id"]);
    let b_event = assert_ok(alice.get_event(&room_b, b["event_id"].as_str().expect("id")).await);
    assert_eq!(b_event["room_id"], json!(room_b));

    // Another event type is another path: a new event.
    let other_type = assert_ok(alice.send_event_raw(&room_a, "com.example.other", "same", json!({})).await);
    assert_ne!(other_type["event_id"], a["event_id"], "another event type with the same txn id is a new request");
    // The redact endpoint is another endpoint: it redacts instead of returning the message.
    let target = alice.send_text(&room_a, "to redact").await;
    let redaction = assert_ok(alice.redact_raw(&room_a, &target, "same", json!({})).await);
    assert_ne!(redaction["event_id"], a["event_id"], "a redaction with a used txn id must still redact");
    let redacted = assert_ok(alice.get_event(&room_a, &target).await);
    assert_eq!(redacted["content"], json!({}), "{redacted}");
}

#[tokio::test]
async fn sending_needs_membership() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let content = json!({ "msgtype": "m.text", "body": "hi" });
    assert_err(&bob.send_event_raw(&room, "m.room.message", &new_txn_id(), content.clone()).await, 403, "M_FORBIDDEN");
    assert_err(&bob.send_state_raw(&room, "m.room.topic", "", json!({ "topic": "x" })).await, 403, "M_FORBIDDEN");
    // An unknown room: the spec lists no error for /send; Synapse answers 403 M_FORBIDDEN.
    let resp = bob.send_event_raw("!unknown:localhost", "m.room.message", &new_txn_id(), content.clone()).await;
    assert!(
        matches!(
            (resp.0.as_u16(), resp.1["errcode"].as_str()),
            (403, Some("M_FORBIDDEN")) | (404, Some("M_NOT_FOUND"))
        ),
        "send to an unknown room: expected 403 M_FORBIDDEN (or 404 M_NOT_FOUND), got {} {}",
        resp.0,
        resp.1
    );
    // No token.
    assert_err(
        &server.client().send_event_raw(&room, "m.room.message", "t", content.clone()).await,
        401,
        "M_MISSING_TOKEN",
    );
    // After leaving, sending is forbidden again.
    bob.join(&room).await;
    bob.send_message(&room, content.clone()).await;
    bob.leave(&room).await;
    assert_err(&bob.send_event_raw(&room, "m.room.message", &new_txn_id(), content).await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn get_event_errors() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let mallory = server.register("mallory", "password-m").await;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await;
    let event_id = alice.send_text(&room, "secret").await;

    assert_err(&alice.get_event(&room, "$nosuchevent").await, 404, "M_NOT_FOUND");
    assert_err(&alice.get_event(&room, "$nosuchevent:localhost").await, 404, "M_NOT_FOUND");
    // rooms.yaml: 404 "The event was not found or you do not have permission to read this event."
    assert_err(&mallory.get_event(&room, &event_id).await, 404, "M_NOT_FOUND");
    // An event of one room asked for under another room id.
    let other = alice.create_room(json!({})).await;
    assert_err(&alice.get_event(&other, &event_id).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn message_kinds_round_trip_exactly() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let root = alice.send_text(&room, "root").await;

    let contents: Vec<(&str, Value)> = vec![
        ("m.room.message", json!({ "msgtype": "m.text", "body": "plain" })),
        (
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "**bold** and <i>",
                "format": "org.matrix.custom.html",
                "formatted_body": "<strong>bold</strong> and &lt;i&gt;",
            }),
        ),
        ("m.room.message", json!({ "msgtype": "m.notice", "body": "I am a bot" })),
        ("m.room.message", json!({ "msgtype": "m.emote", "body": "waves" })),
        (
            "m.room.message",
            json!({
                "msgtype": "m.image",
                "body": "cat.png",
                "url": "mxc://localhost/AbCdEfGh",
                "info": {
                    "mimetype": "image/png", "size": 31337, "w": 640, "h": 480,
                    "thumbnail_url": "mxc://localhost/thumb",
                    "thumbnail_info": { "mimetype": "image/jpeg", "size": 1234, "w": 64, "h": 48 },
                },
            }),
        ),
        (
            "m.room.message",
            json!({
                "msgtype": "m.audio",
                "body": "voice.ogg",
                "url": "mxc://localhost/audio",
                "info": { "mimetype": "audio/ogg", "duration": 4200, "size": 5000 },
            }),
        ),
        (
            "m.room.message",
            json!({
                "msgtype": "m.video",
                "body": "clip.mp4",
                "url": "mxc://localhost/video",
                "info": { "mimetype": "video/mp4", "duration": 10000, "w": 1920, "h": 1080, "size": 1_000_000 },
            }),
        ),
        (
            "m.room.message",
            json!({
                "msgtype": "m.file",
                "body": "report.pdf",
                "filename": "report.pdf",
                "url": "mxc://localhost/file",
                "info": { "mimetype": "application/pdf", "size": 2048 },
            }),
        ),
        (
            "m.room.message",
            json!({ "msgtype": "m.location", "body": "Big Ben", "geo_uri": "geo:51.5008,0.1247", "info": {} }),
        ),
        (
            "m.sticker",
            json!({
                "body": "Landing",
                "url": "mxc://localhost/sticker",
                "info": { "mimetype": "image/png", "w": 200, "h": 200, "size": 73602 },
            }),
        ),
        (
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "> <@alice:localhost> root\n\nreply",
                "m.relates_to": { "m.in_reply_to": { "event_id": root } },
            }),
        ),
        (
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "hey alice, @room",
                "m.mentions": { "user_ids": [alice.user_id], "room": true },
            }),
        ),
        (
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "* root (edited)",
                "m.new_content": { "msgtype": "m.text", "body": "root (edited)" },
                "m.relates_to": { "rel_type": "m.replace", "event_id": root },
            }),
        ),
        ("m.reaction", json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": "👍" } })),
        (
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "in a thread",
                "m.relates_to": {
                    "rel_type": "m.thread",
                    "event_id": root,
                    "is_falling_back": true,
                    "m.in_reply_to": { "event_id": root },
                },
            }),
        ),
        (
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "Ünïcødé 🎉 \"q\" \\ \n\t \u{0001} \u{2028} 中文",
                "com.example.numbers": { "big": 9_007_199_254_740_991i64, "neg": -9_007_199_254_740_991i64, "zero": 0 },
                "com.example.nested": { "a": [[], {}, [null, true, false]], "": "empty key" },
            }),
        ),
        ("com.example.custom", json!({ "anything": { "goes": ["here", 1, null] } })),
    ];

    let mut sent = Vec::new();
    for (event_type, content) in &contents {
        let event_id = bob.send_event(&room, event_type, content.clone()).await;
        let event = assert_ok(alice.get_event(&room, &event_id).await);
        assert_eq!(&event["content"], content, "{event_type} content changed in GET /event: {event}");
        assert_eq!(event["type"], json!(event_type));
        assert_eq!(event["sender"], json!(bob.user_id));
        sent.push(event_id);
    }

    // The same through /messages, in order.
    let page = alice.messages(&room, &format!("dir=b&limit={}", contents.len())).await;
    let mut chunk = page["chunk"].as_array().expect("chunk").clone();
    chunk.reverse();
    assert_eq!(ids(&chunk), sent, "/messages order");
    for ((event_type, content), event) in contents.iter().zip(&chunk) {
        assert_eq!(&event["content"], content, "{event_type} content changed in /messages: {event}");
    }
}

#[tokio::test]
async fn paging_backwards_through_50_messages_10_at_a_time() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await;
    let mut sent = Vec::new();
    for i in 0..50 {
        sent.push(alice.send_text(&room, &format!("message {i}")).await);
    }
    let filter = json!({ "types": ["m.room.message"] });
    let encoded_filter = enc(&filter.to_string());

    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 7, "too many pages");
        let mut query = format!("dir=b&limit=10&filter={encoded_filter}");
        if let Some(from) = &from {
            query.push_str(&format!("&from={}", enc(from)));
        }
        let page = alice.messages(&room, &query).await;
        if let Some(from) = &from {
            assert_eq!(page["start"], json!(from), "start must be the given from token");
        }
        let chunk = page["chunk"].as_array().expect("chunk");
        assert!(chunk.len() <= 10, "{page}");
        seen.extend(ids(chunk));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let mut expected = sent.clone();
    expected.reverse();
    assert_eq!(seen, expected, "all 50 messages exactly once, newest first");

    // Without a filter, paging reaches the room's creation and then stops with no `end`.
    let all = alice.paginate_all(&room, "b", 10, None, 20).await;
    assert_eq!(all.last().map(|e| e["type"].clone()), Some(json!("m.room.create")));
    assert_eq!(all.iter().filter(|e| e["type"] == json!("m.room.message")).count(), 50);
    let forwards = alice.paginate_all(&room, "f", 10, None, 20).await;
    let mut reversed = ids(&all);
    reversed.reverse();
    assert_eq!(ids(&forwards), reversed, "dir=f is the reverse of dir=b");
}

#[tokio::test]
async fn messages_limit_from_and_to() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await;
    let mut sent = Vec::new();
    for i in 0..40 {
        sent.push(alice.send_text(&room, &format!("m{i}")).await);
    }
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();

    // Default limit is 10.
    let page = alice.messages(&room, "dir=b").await;
    assert_eq!(ids(page["chunk"].as_array().expect("chunk")), newest_first[..10].to_vec(), "default limit 10");
    assert!(page["end"].is_string(), "{page}");

    // Tokens after 10 and after 30 messages.
    let first = alice.messages(&room, "dir=b&limit=10").await;
    let t10 = first["end"].as_str().expect("end").to_owned();
    let second = alice.messages(&room, &format!("dir=b&limit=20&from={}", enc(&t10))).await;
    assert_eq!(ids(second["chunk"].as_array().expect("chunk")), newest_first[10..30].to_vec());
    let t30 = second["end"].as_str().expect("end").to_owned();

    // from t10 back to t30: exactly the 20 messages between.
    let between = alice.messages(&room, &format!("dir=b&limit=100&from={}&to={}", enc(&t10), enc(&t30))).await;
    assert_eq!(ids(between["chunk"].as_array().expect("chunk")), newest_first[10..30].to_vec(), "from/to dir=b");

    // dir=f without from starts at the beginning of the room.
    let start = alice.messages(&room, "dir=f&limit=1").await;
    assert_eq!(start["chunk"][0]["type"], json!("m.room.create"), "{start}");
    let all_forward = alice.paginate_all(&room, "f", 100, None, 5).await;
    assert_eq!(all_forward.last().map(|e| e["event_id"].clone()), Some(json!(sent[39])));
}

/// Tokens are positions between events: paging forwards from a backwards
/// page's `end` token starts with the last event of that page (Synapse's
/// semantics: the token lies just before that event).
#[tokio::test]
async fn changing_direction_at_a_token() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await;
    let mut sent = Vec::new();
    for i in 0..40 {
        sent.push(alice.send_text(&room, &format!("m{i}")).await);
    }
    let first = alice.messages(&room, "dir=b&limit=10").await;
    let t10 = first["end"].as_str().expect("end").to_owned();
    let second = alice.messages(&room, &format!("dir=b&limit=20&from={}", enc(&t10))).await;
    let t30 = second["end"].as_str().expect("end").to_owned();

    // Forwards from t30 returns the newer messages, oldest first.
    let forward = alice.messages(&room, &format!("dir=f&limit=5&from={}", enc(&t30))).await;
    let expected: Vec<String> = sent[10..15].to_vec();
    assert_eq!(ids(forward["chunk"].as_array().expect("chunk")), expected, "dir=f from a dir=b end token");
    // ... and with to=t10 it stops there.
    let forward_to = alice.messages(&room, &format!("dir=f&limit=100&from={}&to={}", enc(&t30), enc(&t10))).await;
    assert_eq!(ids(forward_to["chunk"].as_array().expect("chunk")), sent[10..30].to_vec(), "from/to dir=f");
}

#[tokio::test]
async fn messages_filters_types_and_not_types() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let mut pings = Vec::new();
    let mut texts = Vec::new();
    for i in 0..6 {
        texts.push(alice.send_text(&room, &format!("text {i}")).await);
        pings.push(bob.send_event(&room, "com.example.ping", json!({ "i": i })).await);
    }
    let query = |filter: Value| format!("dir=b&limit=100&filter={}", enc(&filter.to_string()));

    let only_pings = alice.messages(&room, &query(json!({ "types": ["com.example.ping"] }))).await;
    let mut expected = pings.clone();
    expected.reverse();
    assert_eq!(ids(only_pings["chunk"].as_array().expect("chunk")), expected);

    let no_messages = alice.messages(&room, &query(json!({ "not_types": ["m.room.message", "m.room.member"] }))).await;
    for event in no_messages["chunk"].as_array().expect("chunk") {
        assert!(event["type"] != json!("m.room.message") && event["type"] != json!("m.room.member"), "{event}");
    }
    assert_eq!(
        no_messages["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter(|e| e["type"] == json!("com.example.ping"))
            .count(),
        6
    );

    // not_types wins over types; wildcards match prefixes.
    let both = alice
        .messages(
            &room,
            &query(json!({ "types": ["com.example.*", "m.room.message"], "not_types": ["m.room.message"] })),
        )
        .await;
    assert_eq!(ids(both["chunk"].as_array().expect("chunk")), expected);

    // senders / not_senders.
    let by_alice =
        alice.messages(&room, &query(json!({ "senders": [alice.user_id], "types": ["m.room.message"] }))).await;
    let mut expected_texts = texts.clone();
    expected_texts.reverse();
    assert_eq!(ids(by_alice["chunk"].as_array().expect("chunk")), expected_texts);
    let not_bob = alice.messages(&room, &query(json!({ "not_senders": [bob.user_id] }))).await;
    assert!(not_bob["chunk"].as_array().expect("chunk").iter().all(|e| e["sender"] != json!(bob.user_id)));

    // A filter's limit applies when no limit parameter is given.
    let limited = alice
        .messages(
            &room,
            &format!("dir=b&filter={}", enc(&json!({ "limit": 2, "types": ["m.room.message"] }).to_string())),
        )
        .await;
    assert_eq!(ids(limited["chunk"].as_array().expect("chunk")), expected_texts[..2].to_vec());
}

#[tokio::test]
async fn messages_errors() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let mallory = server.register("mallory", "password-m").await;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await;
    // message_pagination.yaml: 403 "You aren't a member of the room."
    assert_err(&mallory.messages_raw(&room, "dir=b").await, 403, "M_FORBIDDEN");
    assert_err(&server.client().messages_raw(&room, "dir=b").await, 401, "M_MISSING_TOKEN");
    let (status, body) = alice.messages_raw(&room, "dir=sideways").await;
    assert_eq!(status.as_u16(), 400, "an invalid dir is a bad request: {body}");
    let (status, body) = alice.messages_raw(&room, "dir=b&filter=notjson").await;
    assert_eq!(status.as_u16(), 400, "an invalid filter is a bad request: {body}");
}

#[tokio::test]
async fn history_visibility_joined_hides_earlier_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{ "type": "m.room.history_visibility", "content": { "history_visibility": "joined" } }],
        }))
        .await;
    let hidden = alice.send_text(&room, "before bob").await;
    bob.join(&room).await;
    let visible = alice.send_text(&room, "after bob").await;
    let seen = ids(&bob.paginate_all(&room, "b", 50, None, 10).await);
    assert!(seen.contains(&visible), "bob must see messages after joining");
    assert!(!seen.contains(&hidden), "bob must not see messages from before joining: {seen:?}");
    assert_err(&bob.get_event(&room, &hidden).await, 404, "M_NOT_FOUND");
    assert_ok(bob.get_event(&room, &visible).await);
}

#[tokio::test]
async fn a_former_member_reads_history_up_to_leaving() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let before = alice.send_text(&room, "while bob is here").await;
    bob.leave(&room).await;
    let after = alice.send_text(&room, "after bob left").await;
    let seen = ids(&bob.paginate_all(&room, "b", 50, None, 10).await);
    assert!(seen.contains(&before), "{seen:?}");
    assert!(!seen.contains(&after), "a former member must not see later messages: {seen:?}");
    assert_err(&bob.get_event(&room, &after).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn event_shape_in_client_format() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({})).await;
    let event_id = alice.send_text(&room, "shape").await;
    let event = assert_ok(alice.get_event(&room, &event_id).await);
    let keys: std::collections::BTreeSet<&str> =
        event.as_object().expect("object").keys().map(String::as_str).collect();
    for key in ["content", "event_id", "origin_server_ts", "room_id", "sender", "type"] {
        assert!(keys.contains(key), "client event without {key}: {event}");
    }
    for key in ["hashes", "signatures", "auth_events", "prev_events", "depth", "origin"] {
        assert!(!keys.contains(key), "client events must not expose PDU field {key}: {event}");
    }
    assert!(event.get("state_key").is_none(), "message events have no state_key: {event}");
    assert!(event["unsigned"]["age"].is_i64() || event["unsigned"]["age"].is_u64(), "unsigned.age: {event}");
    let path = Client::room_path(&room, &format!("/event/{}", enc(&event_id)));
    assert_ok(alice.get(&path).await);
}
