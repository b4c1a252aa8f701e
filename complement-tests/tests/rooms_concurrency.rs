//! Many writers in one room: every message is stored once, in one order that
//! `/messages` serves consistently in both directions.

use std::collections::{HashMap, HashSet};

use complement_tests::{Client, TestServer, assert_ok, unique_localpart};
use serde_json::{Value, json};

const USERS: usize = 8;
const MESSAGES_PER_USER: usize = 200;

fn message_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == json!("m.room.message"))
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

/// `count` new users; user i joins room i % rooms.len().
async fn writers(server: &TestServer, rooms: &[String], count: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for i in 0..count {
        let client = server.register(&unique_localpart("writer"), "password-w").await;
        client.join(&rooms[i % rooms.len()]).await;
        clients.push(client);
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_users_send_200_messages_each_concurrently() {
    let server = TestServer::start().await;
    let creator = server.register("creator", "password-c").await;
    let room = creator.create_room(json!({ "preset": "public_chat", "name": "busy" })).await;

    let clients = writers(&server, std::slice::from_ref(&room), USERS).await;

    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .enumerate()
        .map(|(u, client)| {
            let room = room.clone();
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(MESSAGES_PER_USER);
                for n in 0..MESSAGES_PER_USER {
                    let id = client
                        .send_message(
                            &room,
                            json!({ "msgtype": "m.text", "body": format!("u{u} n{n}"), "u": u, "n": n }),
                        )
                        .await;
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let mut sent: Vec<Vec<String>> = Vec::new();
    for task in tasks {
        sent.push(task.await.expect("sender task"));
    }
    let all_sent: HashSet<&String> = sent.iter().flatten().collect();
    assert_eq!(all_sent.len(), USERS * MESSAGES_PER_USER, "the server returned duplicate event ids to senders");

    // Backwards, 100 a page, until there is no `end`.
    let backwards = creator.paginate_all(&room, "b", 100, None, 100).await;
    let back_ids = message_ids(&backwards);
    assert_eq!(back_ids.len(), USERS * MESSAGES_PER_USER, "dir=b returned {} messages", back_ids.len());
    let distinct: HashSet<&String> = back_ids.iter().collect();
    assert_eq!(distinct.len(), back_ids.len(), "dir=b returned some messages more than once");
    assert_eq!(distinct, all_sent, "dir=b returned other messages than were sent");
    let all_ids: Vec<&str> = backwards.iter().map(|e| e["event_id"].as_str().expect("event_id")).collect();
    let all_distinct: HashSet<&str> = all_ids.iter().copied().collect();
    assert_eq!(all_distinct.len(), all_ids.len(), "dir=b returned some events more than once");
    assert_eq!(backwards.last().map(|e| e["type"].clone()), Some(json!("m.room.create")), "dir=b ends at the create");

    // Forwards from the start: the exact reverse.
    let forwards = creator.paginate_all(&room, "f", 100, None, 100).await;
    let forward_ids: Vec<&str> = forwards.iter().map(|e| e["event_id"].as_str().expect("event_id")).collect();
    let mut reversed = all_ids.clone();
    reversed.reverse();
    assert_eq!(forward_ids.len(), reversed.len(), "dir=f and dir=b returned different numbers of events");
    assert!(forward_ids == reversed, "dir=f order is not the reverse of dir=b order");

    // Each sender's messages appear in the order it sent them (each send
    // returned before the next one started).
    let position: HashMap<&str, usize> = forward_ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for (u, ids) in sent.iter().enumerate() {
        let positions: Vec<usize> = ids.iter().map(|id| position[id.as_str()]).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "user {u}'s messages are out of order in the timeline");
    }
    for event in forwards.iter().filter(|e| e["type"] == json!("m.room.message")) {
        let u = event["content"]["u"].as_u64().expect("u") as usize;
        assert_eq!(event["sender"], json!(clients[u].user_id), "{event}");
        let n = event["content"]["n"].as_u64().expect("n") as usize;
        assert_eq!(sent[u][n], event["event_id"].as_str().expect("event_id"), "{event}");
    }

    // The same with a type filter and smaller pages.
    let filter = json!({ "types": ["m.room.message"] });
    let filtered = creator.paginate_all(&room, "b", 37, Some(&filter), 200).await;
    let filtered_ids: Vec<&str> = filtered.iter().map(|e| e["event_id"].as_str().expect("event_id")).collect();
    assert_eq!(filtered_ids.len(), back_ids.len(), "filtered dir=b count");
    assert!(filtered_ids.iter().zip(&back_ids).all(|(a, b)| a == b), "filtered dir=b order differs");
}

/// Clients that retry while their first attempt is still being written (the
/// retry can land in the same batch as the original): one event per
/// transaction id, the same id to both attempts, and the other writers of the
/// batch unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_racing_their_original_give_one_event_per_transaction() {
    const SENDERS: usize = 6;
    const SENDS: usize = 40;
    let server = TestServer::start().await;
    let creator = server.register("creator", "password-c").await;
    let rooms = [
        creator.create_room(json!({ "preset": "public_chat", "name": "one" })).await,
        creator.create_room(json!({ "preset": "public_chat", "name": "two" })).await,
    ];
    let clients = writers(&server, &rooms, SENDERS).await;
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .enumerate()
        .map(|(u, client)| {
            let room = rooms[u % 2].clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..SENDS {
                    let txn = format!("retry-{u}-{n}");
                    let content = json!({ "msgtype": "m.text", "body": format!("u{u} n{n}") });
                    // Every third message is sent twice at once; the others once.
                    if n % 3 == 0 {
                        let (a, b) = tokio::join!(
                            client.send_event_raw(&room, "m.room.message", &txn, content.clone()),
                            client.send_event_raw(&room, "m.room.message", &txn, content.clone()),
                        );
                        let (a, b) = (assert_ok(a), assert_ok(b));
                        assert_eq!(a["event_id"], b["event_id"], "two attempts of {txn} got different events");
                        ids.push(a["event_id"].as_str().expect("event_id").to_owned());
                    } else {
                        let sent = assert_ok(client.send_event_raw(&room, "m.room.message", &txn, content).await);
                        ids.push(sent["event_id"].as_str().expect("event_id").to_owned());
                    }
                }
                ids
            })
        })
        .collect();
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(task.await.expect("sender task"));
    }
    for (r, room) in rooms.iter().enumerate() {
        let timeline = creator.paginate_all(room, "f", 100, None, 100).await;
        let messages = message_ids(&timeline);
        let expected: HashSet<&String> = sent.iter().skip(r).step_by(2).flatten().collect();
        assert_eq!(messages.len(), expected.len(), "room {r}: one event per transaction id");
        assert_eq!(messages.iter().collect::<HashSet<_>>(), expected, "room {r}: the events the senders were given");
    }
}
