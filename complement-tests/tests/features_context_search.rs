//! `/context`, `/timestamp_to_event` and `/search`.

mod support;

use complement_tests::{Client, TestServer, assert_err, assert_ok, enc, now_ms};
use serde_json::{Value, json};
use support::*;

// ---------------------------------------------------------------- /context

async fn context(client: &Client, room: &str, event: &str, query: &str) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{}/context/{}{query}", enc(room), enc(event));
    assert_ok(client.get(&path).await)
}

#[tokio::test]
async fn context_returns_surrounding_events_state_and_tokens() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_room(&alice, json!({ "preset": "public_chat", "name": "Context room" })).await;
    let mut sent = Vec::new();
    for i in 1..=5 {
        sent.push(send_text(&alice, &room, &format!("m{i}")).await);
    }

    let body = context(&alice, &room, &sent[2], "?limit=20").await;
    assert_eq!(body["event"]["event_id"], json!(sent[2]), "{body}");
    assert_eq!(body["event"]["content"]["body"], json!("m3"));
    let before = body["events_before"].as_array().unwrap_or_else(|| panic!("events_before: {body}"));
    let after = body["events_after"].as_array().unwrap_or_else(|| panic!("events_after: {body}"));
    // events_before is reverse-chronological, events_after chronological.
    assert_eq!(message_bodies(before)[..2], ["m2".to_owned(), "m1".to_owned()], "{body}");
    assert_eq!(ids(&before[..2]), vec![sent[1].clone(), sent[0].clone()]);
    assert_eq!(message_bodies(after), vec!["m4".to_owned(), "m5".to_owned()], "{body}");
    assert_eq!(ids(after), vec![sent[3].clone(), sent[4].clone()]);
    // The events before m1 are the room's creation events, ending with m.room.create.
    assert_eq!(before.last().expect("non-empty")["type"], json!("m.room.create"), "{body}");
    assert!(body["start"].is_string() && body["end"].is_string(), "start/end tokens: {body}");

    let state = body["state"].as_array().unwrap_or_else(|| panic!("state array: {body}"));
    let has = |t: &str| state.iter().any(|e| e["type"] == json!(t));
    assert!(has("m.room.create") && has("m.room.member") && has("m.room.name"), "state: {body}");
    let name = state.iter().find(|e| e["type"] == json!("m.room.name")).expect("name");
    assert_eq!(name["content"]["name"], json!("Context room"));

    // `end` continues forwards after the last returned event, `start` backwards before the first.
    let m3 = context(&alice, &room, &sent[2], "?limit=2").await;
    let end = m3["end"].as_str().expect("end").to_owned();
    let fwd = assert_ok(messages_raw(&alice, &room, "f", 10, &format!("&from={}", enc(&end))).await);
    let after_ids: Vec<String> = m3["events_after"].as_array().map(|a| ids(a)).unwrap_or_default();
    let expected_rest: Vec<String> = sent[3 + after_ids.len()..].to_vec();
    assert_eq!(chunk_ids(&fwd), expected_rest, "forward from `end`: {fwd}");
}

#[tokio::test]
async fn context_limit_bounds_the_number_of_events() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let mut sent = Vec::new();
    for i in 1..=6 {
        sent.push(send_text(&alice, &room, &format!("m{i}")).await);
    }
    let body = context(&alice, &room, &sent[3], "?limit=2").await;
    let before = body["events_before"].as_array().expect("events_before").len();
    let after = body["events_after"].as_array().expect("events_after").len();
    assert!(before + after <= 2, "limit applies to before+after: {body}");
    assert!(before + after >= 1, "some context is returned: {body}");
    assert_eq!(body["event"]["event_id"], json!(sent[3]));

    let body = context(&alice, &room, &sent[3], "?limit=0").await;
    assert_eq!(body["event"]["event_id"], json!(sent[3]), "event is returned even with limit=0: {body}");
    assert_eq!(body["events_before"].as_array().map(Vec::len).unwrap_or(0), 0, "{body}");
    assert_eq!(body["events_after"].as_array().map(Vec::len).unwrap_or(0), 0, "{body}");
}

#[tokio::test]
async fn context_of_unknown_event_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let path = format!("/_matrix/client/v3/rooms/{}/context/{}", enc(&room), enc("$doesnotexist"));
    assert_err(&alice.get(&path).await, 404, "M_NOT_FOUND");
}

// ------------------------------------------------------- /timestamp_to_event

#[tokio::test]
async fn timestamp_to_event_finds_closest_event_in_each_direction() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let before = send_text(&alice, &room, "before").await;
    sleep_ms(50).await;
    let ts = now_ms();
    sleep_ms(50).await;
    let after = send_text(&alice, &room, "after").await;
    let path =
        |ts: u64, dir: &str| format!("/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir={dir}", enc(&room));

    let body = assert_ok(alice.get(&path(ts, "b")).await);
    assert_eq!(body["event_id"], json!(before), "{body}");
    let before_ts = body["origin_server_ts"].as_u64().unwrap_or_else(|| panic!("origin_server_ts: {body}"));
    assert!(before_ts <= ts, "{body}");
    let event = assert_ok(get_event_raw(&alice, &room, &before).await);
    assert_eq!(event["origin_server_ts"].as_u64(), Some(before_ts));

    let body = assert_ok(alice.get(&path(ts, "f")).await);
    assert_eq!(body["event_id"], json!(after), "{body}");
    assert!(body["origin_server_ts"].as_u64().is_some_and(|t| t >= ts), "{body}");

    // Nothing after the far future, nothing before the room existed.
    assert_err(&alice.get(&path(ts + 3_600_000, "f")).await, 404, "M_NOT_FOUND");
    assert_err(&alice.get(&path(1_000, "b")).await, 404, "M_NOT_FOUND");
}

// ------------------------------------------------------------------ /search

async fn search(client: &Client, criteria: Value, next_batch: Option<&str>) -> Value {
    let path = match next_batch {
        Some(token) => format!("/_matrix/client/v3/search?next_batch={}", enc(token)),
        None => "/_matrix/client/v3/search".to_owned(),
    };
    let body = assert_ok(client.post(&path, json!({ "search_categories": { "room_events": criteria } })).await);
    body["search_categories"]["room_events"].clone()
}

fn result_ids(room_events: &Value) -> Vec<String> {
    room_events["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results array: {room_events}"))
        .iter()
        .map(|r| r["result"]["event_id"].as_str().unwrap_or_else(|| panic!("result without event_id: {r}")).to_owned())
        .collect()
}

#[tokio::test]
async fn search_finds_messages_with_count_highlights_and_order() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let a1 = send_text(&alice, &room, "I like apples").await;
    let _other = send_text(&alice, &room, "bananas are yellow").await;
    let a2 = send_text(&alice, &room, "apples and more apples, the apples are red").await;
    let a3 = send_text(&alice, &room, "green apples").await;

    let recent = search(&alice, json!({ "search_term": "apples", "order_by": "recent" }), None).await;
    assert_eq!(result_ids(&recent), vec![a3.clone(), a2.clone(), a1.clone()], "newest first: {recent}");
    assert_eq!(recent["count"], json!(3), "{recent}");
    let highlights: Vec<String> = recent["highlights"]
        .as_array()
        .unwrap_or_else(|| panic!("highlights: {recent}"))
        .iter()
        .filter_map(|h| h.as_str().map(str::to_lowercase))
        .collect();
    assert!(highlights.iter().any(|h| h.contains("apple")), "highlights: {recent}");
    let first = &recent["results"][0];
    assert_eq!(first["result"]["content"]["body"], json!("green apples"), "{first}");
    assert_eq!(first["result"]["room_id"], json!(room));
    assert!(first["rank"].is_number(), "rank: {first}");
    assert!(recent.get("next_batch").is_none(), "one page only: {recent}");

    let ranked = search(&alice, json!({ "search_term": "apples", "order_by": "rank" }), None).await;
    let mut got = result_ids(&ranked);
    got.sort();
    let mut expected = vec![a1, a2, a3];
    expected.sort();
    assert_eq!(got, expected, "{ranked}");
    let ranks: Vec<f64> = ranked["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["rank"].as_f64().unwrap_or_else(|| panic!("numeric rank: {r}")))
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "rank order is descending: {ranks:?}");
    assert_eq!(ranked["count"], json!(3));

    // The default order is rank, and no match means no results.
    let none = search(&alice, json!({ "search_term": "cherries" }), None).await;
    assert_eq!(result_ids(&none), Vec::<String>::new(), "{none}");
    assert_eq!(none["count"], json!(0), "{none}");
}

#[tokio::test]
async fn search_filter_rooms_restricts_results() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room1 = create_public_room(&alice).await;
    let room2 = create_public_room(&alice).await;
    let in1 = send_text(&alice, &room1, "kiwi in room one").await;
    let in2 = send_text(&alice, &room2, "kiwi in room two").await;

    let all = search(&alice, json!({ "search_term": "kiwi", "order_by": "recent" }), None).await;
    assert_eq!(result_ids(&all), vec![in2.clone(), in1.clone()], "{all}");

    let only1 =
        search(&alice, json!({ "search_term": "kiwi", "order_by": "recent", "filter": { "rooms": [room1] } }), None)
            .await;
    assert_eq!(result_ids(&only1), vec![in1], "{only1}");
    assert_eq!(only1["count"], json!(1), "{only1}");
}

#[tokio::test]
async fn search_event_context_with_profile() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let profile = format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id));
    assert_ok(alice.put(&profile, json!({ "displayname": "Alice A" })).await);
    let room = create_public_room(&alice).await;
    let b1 = send_text(&alice, &room, "before one").await;
    let b2 = send_text(&alice, &room, "before two").await;
    let hit = send_text(&alice, &room, "the mango is here").await;
    let a1 = send_text(&alice, &room, "after one").await;
    let _a2 = send_text(&alice, &room, "after two").await;

    let criteria = json!({
        "search_term": "mango",
        "event_context": { "before_limit": 2, "after_limit": 1, "include_profile": true },
    });
    let body = search(&alice, criteria, None).await;
    assert_eq!(result_ids(&body), vec![hit], "{body}");
    let ctx = &body["results"][0]["context"];
    let before = ctx["events_before"].as_array().unwrap_or_else(|| panic!("events_before: {body}"));
    let after = ctx["events_after"].as_array().unwrap_or_else(|| panic!("events_after: {body}"));
    let mut before_ids = ids(before);
    before_ids.sort();
    let mut expected_before = vec![b1, b2];
    expected_before.sort();
    assert_eq!(before_ids, expected_before, "before_limit=2: {ctx}");
    assert_eq!(ids(after), vec![a1], "after_limit=1: {ctx}");
    assert!(ctx["start"].is_string() && ctx["end"].is_string(), "context tokens: {ctx}");
    assert_eq!(ctx["profile_info"][&alice.user_id]["displayname"], json!("Alice A"), "profile_info: {ctx}");
}

#[tokio::test]
async fn search_include_state_returns_room_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_room(&alice, json!({ "preset": "public_chat", "name": "Stateful" })).await;
    send_text(&alice, &room, "papaya").await;
    let body = search(&alice, json!({ "search_term": "papaya", "include_state": true }), None).await;
    assert_eq!(result_ids(&body).len(), 1, "{body}");
    let state = body["state"][&room].as_array().unwrap_or_else(|| panic!("state for {room}: {body}"));
    assert!(state.iter().any(|e| e["type"] == json!("m.room.create")), "{body}");
    let name = state.iter().find(|e| e["type"] == json!("m.room.name")).unwrap_or_else(|| panic!("name: {body}"));
    assert_eq!(name["content"]["name"], json!("Stateful"));
}

#[tokio::test]
async fn search_paginates_with_next_batch() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(send_text(&alice, &room, &format!("plum number {i}")).await);
    }
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
    let criteria = json!({ "search_term": "plum", "order_by": "recent", "filter": { "limit": 2 } });

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for page in 0..3 {
        let body = search(&alice, criteria.clone(), token.as_deref()).await;
        let got = result_ids(&body);
        assert_eq!(got.len(), if page < 2 { 2 } else { 1 }, "page {page}: {body}");
        assert_eq!(body["count"], json!(5), "count is the total: {body}");
        seen.extend(got);
        token = body["next_batch"].as_str().map(str::to_owned);
        if page < 2 {
            assert!(token.is_some(), "page {page} must have next_batch: {body}");
        }
    }
    assert_eq!(seen, newest_first);
    if let Some(token) = token {
        let body = search(&alice, criteria, Some(&token)).await;
        assert_eq!(result_ids(&body), Vec::<String>::new(), "{body}");
    }
}

#[tokio::test]
async fn search_does_not_find_messages_of_rooms_the_user_is_not_in() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_private_room(&alice).await;
    send_text(&alice, &room, "secret durian").await;
    let public = create_public_room(&alice).await;
    send_text(&alice, &public, "public durian").await;

    let body = search(&bob, json!({ "search_term": "durian" }), None).await;
    assert_eq!(result_ids(&body), Vec::<String>::new(), "bob is in no room: {body}");
    assert_eq!(body["count"], json!(0), "{body}");

    // Even naming the room in the filter does not reveal it.
    let body = search(&bob, json!({ "search_term": "durian", "filter": { "rooms": [room] } }), None).await;
    assert_eq!(result_ids(&body), Vec::<String>::new(), "{body}");
}

#[tokio::test]
async fn search_does_not_find_redacted_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let gone = send_text(&alice, &room, "lychee to be redacted").await;
    let kept = send_text(&alice, &room, "lychee to keep").await;
    let body = search(&alice, json!({ "search_term": "lychee", "order_by": "recent" }), None).await;
    assert_eq!(result_ids(&body), vec![kept.clone(), gone.clone()], "{body}");

    let path = format!("/_matrix/client/v3/rooms/{}/redact/{}/{}", enc(&room), enc(&gone), txn());
    assert_ok(alice.put(&path, json!({ "reason": "oops" })).await);
    let body = search(&alice, json!({ "search_term": "lychee", "order_by": "recent" }), None).await;
    assert_eq!(result_ids(&body), vec![kept], "{body}");
    assert_eq!(body["count"], json!(1), "{body}");
}
