//! Storage conformance tests, run against SQLite always and against PostgreSQL
//! when `TEST_DATABASE_URL` names a server (CI sets it; a missing server fails).

use std::sync::Arc;

use super::*;

/// A fresh store of each engine under test. Each holds what it needs to clean up.
pub(super) struct Fixture {
    pub(super) storage: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
    pg_cleanup: Option<(String, String)>,
}

impl Fixture {
    pub(super) async fn finish(self) {
        self.storage.close().await;
        if let Some((admin_url, name)) = self.pg_cleanup {
            drop_pg_database(&admin_url, &name).await;
        }
    }
}

/// Drops a database made by `fresh_pg_database`.
pub(super) async fn drop_pg_database(admin_url: &str, name: &str) {
    let pool = sqlx::PgPool::connect(admin_url).await.expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .execute(&pool)
        .await
        .unwrap();
}

pub(super) async fn fixtures() -> Vec<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let mut all = vec![Fixture { storage: open(&url, 4).await.unwrap(), _dir: Some(dir), pg_cleanup: None }];
    if let Some((url, cleanup)) = fresh_pg_database().await {
        let storage = open(&url, 4).await.unwrap();
        all.push(Fixture { storage, _dir: None, pg_cleanup: Some(cleanup) });
    }
    all
}

/// A new PostgreSQL database when `TEST_DATABASE_URL` names a server: its URL,
/// and the admin URL and name to drop it by.
pub(super) async fn fresh_pg_database() -> Option<(String, (String, String))> {
    let server = std::env::var("TEST_DATABASE_URL").ok()?;
    let server = server.trim_end_matches('/').to_owned();
    let admin_url = format!("{server}/postgres");
    let name = format!("kith_unit_{}", crate::service::secrets::random_id(12).to_lowercase());
    let pool = sqlx::PgPool::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&pool).await.unwrap();
    pool.close().await;
    Some((format!("{server}/{name}"), (admin_url, name)))
}

fn user(user_id: &str) -> NewUser<'_> {
    NewUser {
        user_id,
        password_hash: Some("hash"),
        is_admin: false,
        is_guest: false,
        displayname: Some("A"),
        created_ts: 1,
    }
}

fn session<'a>(user_id: &'a str, device_id: &'a str, access: &'a str, refresh: Option<&'a str>) -> NewSession<'a> {
    NewSession { user_id, device_id, access_token_hash: access, refresh_token_hash: refresh, expires_ts: None, now: 5 }
}

#[tokio::test]
async fn users_are_unique_and_deactivation_keeps_the_name() {
    for f in fixtures().await {
        let s = &f.storage;
        assert!(s.create_user(&user("@a:x")).await.unwrap());
        assert!(!s.create_user(&user("@a:x")).await.unwrap(), "{}", s.engine());
        assert_eq!(s.count_users().await.unwrap(), 1);
        s.start_session(&session("@a:x", "D1", "h1", None), Some("phone")).await.unwrap();
        let revoked = s.deactivate_user("@a:x").await.unwrap();
        assert_eq!(revoked, vec!["h1".to_owned()]);
        let u = s.get_user("@a:x").await.unwrap().unwrap();
        assert!(u.deactivated && u.password_hash.is_none() && u.displayname.is_none());
        assert!(!s.create_user(&user("@a:x")).await.unwrap());
        assert!(s.lookup_access_token("h1").await.unwrap().is_none());
        assert!(s.list_devices("@a:x").await.unwrap().is_empty());
        f.finish().await;
    }
}

#[tokio::test]
async fn sessions_replace_tokens_per_device() {
    for f in fixtures().await {
        let s = &f.storage;
        s.create_user(&user("@a:x")).await.unwrap();
        assert!(s.start_session(&session("@a:x", "D1", "h1", Some("r1")), Some("phone")).await.unwrap().is_empty());
        let owner = s.lookup_access_token("h1").await.unwrap().unwrap();
        assert_eq!((owner.user_id.as_str(), owner.device_id.as_str(), owner.is_guest), ("@a:x", "D1", false));
        // A new session on the same device revokes the old tokens but keeps the device name.
        let revoked = s.start_session(&session("@a:x", "D1", "h2", None), None).await.unwrap();
        assert_eq!(revoked, vec!["h1".to_owned()]);
        assert!(s.take_refresh_token("r1").await.unwrap().is_none());
        let device = s.get_device("@a:x", "D1").await.unwrap().unwrap();
        assert_eq!(device.display_name.as_deref(), Some("phone"));

        s.start_session(&session("@a:x", "D2", "h3", Some("r3")), None).await.unwrap();
        assert_eq!(s.take_refresh_token("r3").await.unwrap(), Some(("@a:x".to_owned(), "D2".to_owned())));
        assert!(s.take_refresh_token("r3").await.unwrap().is_none(), "refresh tokens are single-use");

        let revoked = s.revoke_sessions_except("@a:x", Some("D2")).await.unwrap();
        assert_eq!(revoked, vec!["h2".to_owned()]);
        assert!(s.lookup_access_token("h3").await.unwrap().is_some());

        s.touch_device("@a:x", "D2", 99, Some("10.0.0.1")).await.unwrap();
        let d2 = s.get_device("@a:x", "D2").await.unwrap().unwrap();
        assert_eq!((d2.last_seen_ts, d2.last_seen_ip.as_deref()), (Some(99), Some("10.0.0.1")));
        assert!(s.set_device_display_name("@a:x", "D2", Some("laptop")).await.unwrap());
        assert!(!s.set_device_display_name("@a:x", "nope", Some("x")).await.unwrap());

        let revoked = s.delete_devices("@a:x", &["D2".to_owned(), "D1".to_owned()]).await.unwrap();
        assert_eq!(revoked, vec!["h3".to_owned()]);
        assert!(s.list_devices("@a:x").await.unwrap().is_empty());

        f.finish().await;
    }
}

#[tokio::test]
async fn account_data_and_filters() {
    for f in fixtures().await {
        let s = &f.storage;
        s.put_account_data("@a:x", "", "m.direct", "{\"a\":1}", 1).await.unwrap();
        s.put_account_data("@a:x", "", "m.direct", "{\"a\":2}", 2).await.unwrap();
        s.put_account_data("@a:x", "!r:x", "m.direct", "{\"room\":true}", 3).await.unwrap();
        let since: Vec<(String, i64)> =
            s.account_data_since("@a:x", 1).await.unwrap().into_iter().map(|r| (r.room_id, r.stream_id)).collect();
        assert_eq!(since, vec![(String::new(), 2), ("!r:x".to_owned(), 3)]);
        assert_eq!(s.max_account_data_stream().await.unwrap(), 3);
        assert_eq!(s.get_account_data("@a:x", "", "m.direct").await.unwrap().as_deref(), Some("{\"a\":2}"));
        assert_eq!(s.get_account_data("@a:x", "!r:x", "m.direct").await.unwrap().as_deref(), Some("{\"room\":true}"));
        assert!(s.get_account_data("@b:x", "", "m.direct").await.unwrap().is_none());

        let f1 = s.create_filter("@a:x", "{}").await.unwrap();
        let f2 = s.create_filter("@a:x", "{\"x\":1}").await.unwrap();
        assert_ne!(f1, f2);
        assert_eq!(s.get_filter("@a:x", f2).await.unwrap().as_deref(), Some("{\"x\":1}"));
        assert!(s.get_filter("@b:x", f2).await.unwrap().is_none());
        f.finish().await;
    }
}

#[tokio::test]
async fn registration_tokens_are_used_up() {
    for f in fixtures().await {
        let s = &f.storage;
        let once =
            NewRegistrationToken { token_hash: "t1", uses_allowed: Some(1), expiry_ts: None, grants_admin: true };
        s.add_registration_token(&once).await.unwrap();
        let expired =
            NewRegistrationToken { token_hash: "t2", uses_allowed: None, expiry_ts: Some(10), grants_admin: false };
        s.add_registration_token(&expired).await.unwrap();
        assert!(s.registration_token_valid("t1", 100).await.unwrap());
        assert!(!s.registration_token_valid("t2", 100).await.unwrap());
        assert!(s.registration_token_valid("t2", 5).await.unwrap());
        assert!(!s.registration_token_valid("nope", 100).await.unwrap());
        assert_eq!(s.use_registration_token("t1", 100).await.unwrap(), Some(true));
        assert_eq!(s.use_registration_token("t1", 100).await.unwrap(), None);
        assert!(!s.registration_token_valid("t1", 100).await.unwrap());

        let unused =
            NewRegistrationToken { token_hash: "t3", uses_allowed: Some(1), expiry_ts: None, grants_admin: true };
        s.add_registration_token(&unused).await.unwrap();
        s.remove_unused_admin_tokens().await.unwrap();
        assert!(!s.registration_token_valid("t3", 100).await.unwrap());
        f.finish().await;
    }
}

#[tokio::test]
async fn reopening_applies_no_migration_twice_and_refuses_newer_databases() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let storage = open(&url, 2).await.unwrap();
    storage.create_user(&user("@a:x")).await.unwrap();
    storage.close().await;
    let storage = open(&url, 2).await.unwrap();
    assert!(storage.get_user("@a:x").await.unwrap().is_some(), "data survives reopening");
    storage.close().await;

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99999999, 'from the future', TRUE, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    match open(&url, 2).await {
        Err(StorageError::DatabaseNewer(99999999)) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened a database newer than the code"),
    }
}

/// A stored event for tests (a message, or a membership when it has a state key).
pub(crate) fn stored(stream: i64, event_id: &str, room_id: &str, state_key: Option<&str>, group: i64) -> StoredEvent {
    StoredEvent {
        stream_ordering: stream,
        event_id: event_id.to_owned(),
        room_id: room_id.to_owned(),
        event_type: if state_key.is_some() { "m.room.member".into() } else { "m.room.message".into() },
        state_key: state_key.map(str::to_owned),
        sender: "@a:x".into(),
        depth: stream,
        origin_server_ts: 1000 + stream,
        state_group: group,
        replaces_state: None,
        redacted_by: None,
        json: format!("{{\"n\":{stream}}}"),
        parsed: Default::default(),
    }
}

/// The event stored with nothing else.
pub(crate) fn plain(event: &StoredEvent) -> NewEvent<'_> {
    NewEvent {
        event,
        prev_events: &[],
        new_state_group: None,
        membership: None,
        txn: None,
        redaction: None,
        relation: None,
        search: None,
        push_actions: &[],
    }
}

#[tokio::test]
async fn a_batch_of_events_is_stored_whole_or_not_at_all() {
    for f in fixtures().await {
        let s = &f.storage;
        let room =
            RoomRecord { room_id: "!b:x".into(), room_version: "10".into(), creator: "@a:x".into(), is_public: false };
        assert!(s.create_room(&room, 1).await.unwrap());
        let txn = |txn_id| Some(TxnKey { user_id: "@a:x", device_id: "D", scope: "send", txn_id });
        let (e1, e2, e3) =
            (stored(1, "$b1", "!b:x", None, 0), stored(2, "$b2", "!b:x", None, 0), stored(3, "$b3", "!b:x", None, 0));
        // Named twice, as a remote PDU may: one edge is stored.
        let prev1 = ["$b1".to_owned(), "$b1".to_owned()];
        let prev2 = ["$b2".to_owned()];
        s.persist_events(&[
            NewEvent { txn: txn("t1"), ..plain(&e1) },
            NewEvent { txn: txn("t2"), prev_events: &prev1, ..plain(&e2) },
        ])
        .await
        .unwrap();
        assert_eq!(s.forward_extremities("!b:x").await.unwrap()[0].event_id, "$b2", "{}", s.engine());

        // The second event of this batch reuses a transaction id: neither is stored.
        let (e4, e5) = (stored(4, "$b4", "!b:x", None, 0), stored(5, "$b5", "!b:x", None, 0));
        let prev3 = ["$b3".to_owned()];
        let failed = s
            .persist_events(&[
                NewEvent { txn: txn("t3"), prev_events: &prev2, ..plain(&e3) },
                NewEvent { txn: txn("t1"), prev_events: &prev3, ..plain(&e4) },
            ])
            .await;
        assert!(matches!(failed, Err(StorageError::DuplicateTxn)), "{failed:?}");
        assert!(s.get_event("$b3").await.unwrap().is_none(), "{}", s.engine());
        assert!(s.get_event("$b4").await.unwrap().is_none());
        assert_eq!(s.txn_event_id(&txn("t3").unwrap()).await.unwrap(), None);
        assert_eq!(s.forward_extremities("!b:x").await.unwrap()[0].event_id, "$b2");
        // The store is usable after the failed batch.
        s.persist_events(&[NewEvent { txn: txn("t3"), prev_events: &prev2, ..plain(&e5) }]).await.unwrap();
        assert_eq!(s.txn_event_id(&txn("t3").unwrap()).await.unwrap().as_deref(), Some("$b5"));

        // A fork: this event's prev event is no longer an extremity. (PostgreSQL's
        // one-statement path finds that the stored extremity is not the one it
        // replaces, undoes its statement, and the batch is stored the general way.)
        let e6 = stored(6, "$b6", "!b:x", None, 0);
        s.persist_events(&[NewEvent { txn: txn("t6"), prev_events: &prev2, ..plain(&e6) }]).await.unwrap();
        let mut extremities: Vec<String> =
            s.forward_extremities("!b:x").await.unwrap().into_iter().map(|x| x.event_id).collect();
        extremities.sort();
        assert_eq!(extremities, ["$b5", "$b6"], "{}", s.engine());
        assert_eq!(s.txn_event_id(&txn("t6").unwrap()).await.unwrap().as_deref(), Some("$b6"));
        assert!(s.get_event("$b6").await.unwrap().is_some());
        f.finish().await;
    }
}

#[tokio::test]
async fn events_state_groups_and_pagination() {
    for f in fixtures().await {
        let s = &f.storage;
        let room =
            RoomRecord { room_id: "!r:x".into(), room_version: "10".into(), creator: "@a:x".into(), is_public: false };
        assert!(s.create_room(&room, 1).await.unwrap());
        assert!(!s.create_room(&room, 1).await.unwrap());

        // Three state changes: group 2 is a delta against group 1, group 3 against nothing... as planned by callers.
        let entry = |k: &str, e: &str| StateEntry {
            event_type: "m.room.member".into(),
            state_key: k.into(),
            event_id: e.into(),
        };
        let g1 = NewStateGroup { id: 1, prev_group: None, position: 1, delta: vec![entry("@a:x", "$1")] };
        let g2 = NewStateGroup { id: 2, prev_group: Some(1), position: 2, delta: vec![entry("@b:x", "$2")] };
        let g3 = NewStateGroup { id: 3, prev_group: Some(2), position: 3, delta: vec![entry("@a:x", "$3")] };
        for (i, group) in [&g1, &g2, &g3].into_iter().enumerate() {
            let n = i as i64 + 1;
            let key = if n == 2 { "@b:x" } else { "@a:x" };
            let event = stored(n, &format!("${n}"), "!r:x", Some(key), n);
            let txn_id = format!("t{n}");
            let prev = if n > 1 { vec![format!("${}", n - 1)] } else { vec![] };
            s.persist_events(&[NewEvent {
                new_state_group: Some(group),
                membership: Some("join"),
                prev_events: &prev,
                txn: Some(TxnKey { user_id: "@a:x", device_id: "D", scope: "send", txn_id: &txn_id }),
                ..plain(&event)
            }])
            .await
            .unwrap();
        }
        let mut message = stored(4, "$4", "!r:x", None, 3);
        // PostgreSQL's search index reads the text from the event itself.
        message.json = r#"{"content":{"body":"hello searchable world"}}"#.into();
        s.persist_events(&[NewEvent {
            relation: Some(("$3", "m.thread")),
            search: Some(("content.body", "hello searchable world")),
            prev_events: &["$3".to_owned()],
            ..plain(&message)
        }])
        .await
        .unwrap();

        assert_eq!(s.max_ids().await.unwrap(), (4, 3));
        let extremities = s.forward_extremities("!r:x").await.unwrap();
        assert_eq!(extremities.len(), 1, "{}", s.engine());
        assert_eq!(extremities[0].event_id, "$4");
        assert_eq!(s.state_group_lookup(3, "m.room.member", "@a:x").await.unwrap().as_deref(), Some("$3"));
        assert_eq!(s.state_group_lookup(3, "m.room.member", "@b:x").await.unwrap().as_deref(), Some("$2"));
        assert_eq!(s.state_group_lookup(1, "m.room.member", "@b:x").await.unwrap(), None);
        let chain = s.state_group_chain_entries(3).await.unwrap();
        assert_eq!(chain.iter().map(|(g, _)| *g).collect::<Vec<_>>(), vec![1, 2, 3], "oldest first");
        assert_eq!(s.state_group_at_position("!r:x", 2).await.unwrap(), Some(2));
        assert_eq!(s.membership("!r:x", "@b:x").await.unwrap().unwrap().membership, "join");
        assert_eq!(s.rooms_with_membership("@a:x", "join").await.unwrap(), vec!["!r:x".to_owned()]);
        assert_eq!(s.current_state("!r:x").await.unwrap().len(), 2);
        let key = TxnKey { user_id: "@a:x", device_id: "D", scope: "send", txn_id: "t2" };
        assert_eq!(s.txn_event_id(&key).await.unwrap().as_deref(), Some("$2"));
        assert_eq!(s.txn_event_id(&TxnKey { scope: "other", ..key }).await.unwrap(), None);
        assert_eq!(
            s.txn_ids_of_events("@a:x", "D", &["$2".to_owned(), "$4".to_owned()]).await.unwrap(),
            vec![("$2".to_owned(), "t2".to_owned())]
        );
        // Only the sending device sees its transaction ids.
        assert!(s.txn_ids_of_events("@a:x", "E", &["$2".to_owned()]).await.unwrap().is_empty());
        assert!(s.txn_ids_of_events("@b:x", "D", &["$2".to_owned()]).await.unwrap().is_empty());

        let back = s.room_events_page("!r:x", (i64::MAX, i64::MAX), Direction::Backward, 3).await.unwrap();
        assert_eq!(back.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), vec!["$4", "$3", "$2"]);
        let forward = s.room_events_page("!r:x", (2, 2), Direction::Forward, 10).await.unwrap();
        assert_eq!(forward.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), vec!["$2", "$3", "$4"]);

        let threads = s.threads("!r:x", None, i64::MAX, 10).await.unwrap();
        assert_eq!((threads[0].root.as_str(), threads[0].count), ("$3", 1));
        assert_eq!(s.relations("$3", Some("m.thread"), None, 0, Direction::Forward, 10).await.unwrap().len(), 1);

        let rooms = vec!["!r:x".to_owned()];
        let keys = vec!["content.body".to_owned()];
        let (hits, count) = s.search_events(&rooms, "searchable", &keys, false, 0, 10).await.unwrap();
        assert_eq!((count, hits[0].event.event_id.as_str()), (1, "$4"), "{}", s.engine());
        let elsewhere = vec!["!other:x".to_owned()];
        assert_eq!(
            s.search_events(&elsewhere, "searchable", &keys, false, 0, 10).await.unwrap().1,
            0,
            "other rooms only"
        );
        let names = vec!["content.name".to_owned()];
        assert_eq!(s.search_events(&rooms, "searchable", &names, false, 0, 10).await.unwrap().1, 0, "other keys only");
        let (hits, _) = s.search_events(&rooms, "\"quoted OR -weird\"", &keys, true, 0, 10).await.unwrap();
        assert!(hits.is_empty(), "operators in user input are plain words");

        // A redaction rewrites the target and drops it from the search index.
        let redaction = stored(5, "$5", "!r:x", None, 3);
        s.persist_events(&[NewEvent { redaction: Some(("$4", "{\"redacted\":true}")), ..plain(&redaction) }])
            .await
            .unwrap();
        let target = s.get_event("$4").await.unwrap().unwrap();
        assert_eq!((target.json.as_str(), target.redacted_by.as_deref()), ("{\"redacted\":true}", Some("$5")));
        assert_eq!(s.search_events(&rooms, "searchable", &keys, false, 0, 10).await.unwrap().1, 0);

        assert!(s.create_alias("#a:x", "!r:x", "@a:x").await.unwrap());
        assert!(!s.create_alias("#a:x", "!r:x", "@a:x").await.unwrap());
        assert_eq!(s.room_aliases("!r:x").await.unwrap(), vec!["#a:x".to_owned()]);
        assert!(s.delete_alias("#a:x").await.unwrap());
        f.finish().await;
    }
}

#[tokio::test]
async fn push_actions_counts_per_thread_after_receipts() {
    for f in fixtures().await {
        let s = &f.storage;
        let row = |highlight: bool, thread: &str| PushActionRow {
            user_id: "@b:x".into(),
            thread_id: thread.into(),
            highlight,
            actions: "[\"notify\"]".into(),
        };
        let counts = |upto: i64| async move {
            let mut c: Vec<(String, i64, i64)> = s
                .unread_counts("@b:x", "!p:x", upto)
                .await
                .unwrap()
                .into_iter()
                .map(|t| (t.thread_id, t.notifications, t.highlights))
                .collect();
            c.sort();
            c
        };
        let receipt = |receipt_type: &str, thread: &str, event: &str, stream_id: i64| ReceiptRow {
            room_id: "!p:x".into(),
            receipt_type: receipt_type.into(),
            user_id: "@b:x".into(),
            thread_id: thread.into(),
            event_id: event.into(),
            ts: 0,
            stream_id,
        };
        let main = |n: i64, h: i64| ("main".to_owned(), n, h);
        // Bob's membership (a redaction finds the rows to delete through the room's members).
        let join = stored(100, "$join", "!p:x", Some("@b:x"), 0);
        s.persist_events(&[NewEvent { membership: Some("join"), ..plain(&join) }]).await.unwrap();
        let e1 = stored(1, "$1", "!p:x", None, 0);
        s.persist_events(&[NewEvent { push_actions: &[row(false, "main")], ..plain(&e1) }]).await.unwrap();
        let e2 = stored(2, "$2", "!p:x", None, 0);
        s.persist_events(&[NewEvent { push_actions: &[row(true, "main")], ..plain(&e2) }]).await.unwrap();
        let e3 = stored(3, "$3", "!p:x", None, 0);
        let in_thread = [row(false, "$1")];
        s.persist_events(&[NewEvent { push_actions: &in_thread, relation: Some(("$1", "m.thread")), ..plain(&e3) }])
            .await
            .unwrap();
        assert_eq!(counts(10).await, vec![("$1".to_owned(), 1, 0), main(2, 1)], "{}", s.engine());
        assert_eq!(counts(1).await, vec![main(1, 0)], "counts stop at the sync position");

        // An unthreaded receipt covers every thread; a threaded one only its own.
        s.put_receipt(&receipt("m.read.private", "", "$1", 1)).await.unwrap();
        assert_eq!(counts(10).await, vec![("$1".to_owned(), 1, 0), main(1, 1)]);
        s.put_receipt(&receipt("m.read", "$1", "$3", 2)).await.unwrap();
        assert_eq!(counts(10).await, vec![main(1, 1)]);
        s.put_receipt(&receipt("m.read", "main", "$2", 3)).await.unwrap();
        assert_eq!(counts(10).await, vec![]);

        // The user's own event reads their notifications before it in its thread.
        let e4 = stored(4, "$4", "!p:x", None, 0);
        s.persist_events(&[NewEvent { push_actions: &[row(false, "main")], ..plain(&e4) }]).await.unwrap();
        assert_eq!(counts(10).await, vec![main(1, 0)]);
        let mut e5 = stored(5, "$5", "!p:x", None, 0);
        e5.sender = "@b:x".into();
        s.persist_events(&[plain(&e5)]).await.unwrap();
        assert_eq!(counts(10).await, vec![]);

        let all = s.notifications("@b:x", i64::MAX, false, 10).await.unwrap();
        assert_eq!(all.iter().map(|n| n.event_id.as_str()).collect::<Vec<_>>(), vec!["$4", "$3", "$2", "$1"]);
        assert_eq!(all[1].thread_id, "$1");
        let page = s.notifications("@b:x", 3, false, 1).await.unwrap();
        assert_eq!(page.iter().map(|n| n.event_id.as_str()).collect::<Vec<_>>(), vec!["$2"]);
        let highlights = s.notifications("@b:x", i64::MAX, true, 10).await.unwrap();
        assert_eq!(highlights.iter().map(|n| n.event_id.as_str()).collect::<Vec<_>>(), vec!["$2"]);
        let mut positions = s.read_positions("@b:x", "!p:x").await.unwrap();
        positions.sort();
        assert_eq!(positions, vec![("".to_owned(), 1), ("$1".to_owned(), 3), ("main".to_owned(), 5)]);

        // A redaction drops its target's notifications.
        let e6 = stored(6, "$6", "!p:x", None, 0);
        s.persist_events(&[NewEvent { redaction: Some(("$2", "{}")), ..plain(&e6) }]).await.unwrap();
        assert!(s.notifications("@b:x", i64::MAX, true, 10).await.unwrap().is_empty());

        // The user's own reply in a thread reads that thread only.
        let e7 = stored(7, "$7", "!p:x", None, 0);
        let rows = [row(false, "$1"), row(false, "main")];
        s.persist_events(&[NewEvent { push_actions: &rows[..1], relation: Some(("$1", "m.thread")), ..plain(&e7) }])
            .await
            .unwrap();
        let e8 = stored(8, "$8", "!p:x", None, 0);
        s.persist_events(&[NewEvent { push_actions: &rows[1..], ..plain(&e8) }]).await.unwrap();
        assert_eq!(counts(10).await, vec![("$1".to_owned(), 1, 0), main(1, 0)]);
        let mut e9 = stored(9, "$9", "!p:x", None, 0);
        e9.sender = "@b:x".into();
        e9.json = r#"{"content":{"m.relates_to":{"rel_type":"m.thread","event_id":"$1"}}}"#.into();
        s.persist_events(&[NewEvent { relation: Some(("$1", "m.thread")), ..plain(&e9) }]).await.unwrap();
        assert_eq!(counts(10).await, vec![main(1, 0)], "{}", s.engine());
        f.finish().await;
    }
}

#[tokio::test]
async fn pushers_replace_append_and_delete() {
    for f in fixtures().await {
        let s = &f.storage;
        let pusher = |user: &str, lang: &str| PusherRow {
            user_id: user.into(),
            app_id: "app".into(),
            pushkey: "key".into(),
            kind: "http".into(),
            app_display_name: "App".into(),
            device_display_name: "Phone".into(),
            profile_tag: None,
            lang: lang.into(),
            data: "{\"url\":\"https://p/_matrix/push/v1/notify\"}".into(),
            created_ts: 1,
        };
        s.set_pusher(&pusher("@a:x", "en"), false).await.unwrap();
        s.set_pusher(&pusher("@a:x", "fr"), false).await.unwrap();
        assert_eq!(s.pushers("@a:x").await.unwrap(), vec![pusher("@a:x", "fr")], "{}", s.engine());
        s.set_pusher(&pusher("@b:x", "en"), true).await.unwrap();
        assert_eq!(s.pushers("@a:x").await.unwrap().len(), 1, "append keeps other users' pusher");
        s.set_pusher(&pusher("@c:x", "en"), false).await.unwrap();
        assert!(s.pushers("@a:x").await.unwrap().is_empty(), "without append the key moves to the new user");
        assert!(s.pushers("@b:x").await.unwrap().is_empty());
        assert!(s.delete_pusher("@c:x", "app", "key").await.unwrap());
        assert!(!s.delete_pusher("@c:x", "app", "key").await.unwrap());
        f.finish().await;
    }
}

/// A database from before migration 0011 keeps its client transaction ids:
/// they move to `client_txns` when it is opened, and the old table goes.
#[tokio::test]
async fn client_transactions_of_an_older_database_move_when_it_opens() {
    const LEGACY_TABLE: &str = "CREATE TABLE event_txns (user_id TEXT NOT NULL, device_id TEXT NOT NULL,
        scope TEXT NOT NULL, txn_id TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (user_id, device_id, scope, txn_id))";
    const LEGACY_ROW: &str = "INSERT INTO event_txns VALUES ('@a:x', 'D', 'send/!r:x/m.room.message', 't1', '$1')";
    // An event; the caller adds the old table with a transaction of it.
    async fn seed(storage: &dyn Storage) {
        let room =
            RoomRecord { room_id: "!r:x".into(), room_version: "10".into(), creator: "@a:x".into(), is_public: false };
        storage.create_room(&room, 1).await.unwrap();
        storage.persist_events(&[plain(&stored(1, "$1", "!r:x", None, 0))]).await.unwrap();
    }
    async fn check(storage: &dyn Storage) {
        let key = TxnKey { user_id: "@a:x", device_id: "D", scope: "send/!r:x/m.room.message", txn_id: "t1" };
        assert_eq!(storage.txn_event_id(&key).await.unwrap().as_deref(), Some("$1"), "{}", storage.engine());
        assert_eq!(
            storage.txn_ids_of_events("@a:x", "D", &["$1".to_owned()]).await.unwrap(),
            vec![("$1".to_owned(), "t1".to_owned())]
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let old = sqlite::SqliteStore::open(&url, 2).await.unwrap();
    seed(&old).await;
    for sql in [LEGACY_TABLE, LEGACY_ROW] {
        sqlx::query(sql).execute(&old.write).await.unwrap();
    }
    old.close().await;
    drop(old);
    let reopened = sqlite::SqliteStore::open(&url, 2).await.unwrap();
    check(&reopened).await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'event_txns'")
        .fetch_one(&reopened.read)
        .await
        .unwrap();
    assert_eq!(left, 0, "the old table is dropped");

    if let Some((url, (admin_url, name))) = fresh_pg_database().await {
        let old = postgres::PgStore::open(&url, 2).await.unwrap();
        seed(&old).await;
        for sql in [LEGACY_TABLE, LEGACY_ROW] {
            sqlx::query(sql).execute(&old.write).await.unwrap();
        }
        old.close().await;
        let reopened = postgres::PgStore::open(&url, 2).await.unwrap();
        check(&reopened).await;
        let left: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('event_txns')::text").fetch_one(&reopened.read).await.unwrap();
        assert_eq!(left, None, "the old table is dropped");
        reopened.close().await;
        let pool = sqlx::PgPool::connect(&admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
            .execute(&pool)
            .await
            .unwrap();
    }
}

/// Extremities of several rooms change in one batch; where an event's prev
/// event is not the room's stored extremity, the old one stays beside it.
#[tokio::test]
async fn a_batch_updates_the_extremities_of_each_room() {
    for f in fixtures().await {
        let s = &f.storage;
        for room_id in ["!a:x", "!b:x"] {
            let room = RoomRecord {
                room_id: room_id.into(),
                room_version: "10".into(),
                creator: "@a:x".into(),
                is_public: false,
            };
            s.create_room(&room, 1).await.unwrap();
        }
        let (a1, b1) = (stored(1, "$a1", "!a:x", None, 0), stored(2, "$b1", "!b:x", None, 0));
        s.persist_events(&[plain(&a1), plain(&b1)]).await.unwrap();
        // $a2 follows the stored extremity $a1; $b2 names $gone, which is not $b1.
        let (a2, b2) = (stored(3, "$a2", "!a:x", None, 0), stored(4, "$b2", "!b:x", None, 0));
        let (after_a1, after_gone) = (["$a1".to_owned()], ["$gone".to_owned()]);
        s.persist_events(&[
            NewEvent { prev_events: &after_a1, ..plain(&a2) },
            NewEvent { prev_events: &after_gone, ..plain(&b2) },
        ])
        .await
        .unwrap();
        let ids = |extremities: Vec<Extremity>| {
            let mut ids: Vec<String> = extremities.into_iter().map(|e| e.event_id).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(s.forward_extremities("!a:x").await.unwrap()), vec!["$a2"], "{}", s.engine());
        assert_eq!(ids(s.forward_extremities("!b:x").await.unwrap()), vec!["$b1", "$b2"], "{}", s.engine());
        f.finish().await;
    }
}

/// Two room ids that PostgreSQL's hashtext() maps to the same value: its room
/// indexes are keyed by that hash (migration 0015), and every read must still
/// keep the rooms apart.
#[tokio::test]
async fn rooms_whose_ids_hash_alike_keep_their_events_apart() {
    const A: &str = "!collide53299:localhost";
    const B: &str = "!collide259508:localhost";
    for f in fixtures().await {
        let s = &f.storage;
        let row = PushActionRow {
            user_id: "@b:x".into(),
            thread_id: "main".into(),
            highlight: false,
            actions: "[\"notify\"]".into(),
        };
        let rows = [row];
        let members = [stored(100, "$ja", A, Some("@b:x"), 0), stored(101, "$jb", B, Some("@b:x"), 0)];
        for join in &members {
            s.persist_events(&[NewEvent { membership: Some("join"), ..plain(join) }]).await.unwrap();
        }
        // Streams 1..=10 alternate between the rooms: odd in A, even in B, each
        // a message with text to search and a notification for @b:x.
        let events: Vec<StoredEvent> = (1..=10)
            .map(|n| {
                let mut e = stored(n, &format!("${n}"), if n % 2 == 1 { A } else { B }, None, 0);
                e.json = format!(r#"{{"content":{{"body":"mango {n}"}}}}"#);
                e
            })
            .collect();
        for (e, text) in events.iter().zip((1..=10).map(|n| format!("mango {n}"))) {
            let new = NewEvent { push_actions: &rows, search: Some(("content.body", text.as_str())), ..plain(e) };
            s.persist_events(&[new]).await.unwrap();
        }
        let streams = |events: Vec<StoredEvent>| events.iter().map(|e| e.stream_ordering).collect::<Vec<_>>();
        let engine = s.engine();

        let back = s.room_events_page(A, (i64::MAX, i64::MAX), Direction::Backward, 3).await.unwrap();
        assert_eq!(streams(back), vec![100, 9, 7], "{engine}: the join's depth is 100");
        let forward = s.room_events_page(B, (0, 0), Direction::Forward, 3).await.unwrap();
        assert_eq!(streams(forward), vec![2, 4, 6], "{engine}");
        assert_eq!(streams(s.room_events_in_range(A, 0, 10, 2).await.unwrap()), vec![9, 7], "{engine}");
        assert_eq!(streams(s.room_events_in_range(B, 0, 200, 100).await.unwrap()), vec![101, 10, 8, 6, 4, 2]);
        let state = s.room_state_events_in_range(A, 0, 200).await.unwrap();
        assert_eq!(streams(state), vec![100], "{engine}");
        let near = s.event_near_timestamp(A, 1004, Direction::Backward).await.unwrap().unwrap();
        assert_eq!(near.stream_ordering, 3, "{engine}");
        let near = s.event_near_timestamp(B, 1004, Direction::Forward).await.unwrap().unwrap();
        assert_eq!(near.stream_ordering, 4, "{engine}");

        let counts = s.unread_counts("@b:x", A, 200).await.unwrap();
        assert_eq!((counts.len(), counts[0].notifications), (1, 5), "{engine}");
        assert_eq!(s.notifications("@b:x", i64::MAX, false, 100).await.unwrap().len(), 10);

        let (hits, count) =
            s.search_events(&[A.to_owned()], "mango", &["content.body".to_owned()], true, 0, 10).await.unwrap();
        assert_eq!((streams(hits.into_iter().map(|h| h.event).collect()), count), (vec![9, 7, 5, 3, 1], 5), "{engine}");

        // A redaction in A drops that event's notification and search text, and nothing of B's.
        let redaction = stored(11, "$11", A, None, 0);
        s.persist_events(&[NewEvent { redaction: Some(("$3", r#"{"content":{}}"#)), ..plain(&redaction) }])
            .await
            .unwrap();
        let counts = s.unread_counts("@b:x", A, 200).await.unwrap();
        assert_eq!(counts[0].notifications, 4, "{engine}");
        assert_eq!(s.unread_counts("@b:x", B, 200).await.unwrap()[0].notifications, 5, "{engine}");
        let rooms = [A.to_owned(), B.to_owned()];
        let (hits, count) = s.search_events(&rooms, "mango", &["content.body".to_owned()], true, 0, 10).await.unwrap();
        assert_eq!(
            (streams(hits.into_iter().map(|h| h.event).collect()), count),
            (vec![10, 9, 8, 7, 6, 5, 4, 2, 1], 9)
        );
        let (hits, _) = s.search_events(&rooms, "mango", &["content.name".to_owned()], true, 0, 10).await.unwrap();
        assert!(hits.is_empty(), "{engine}: a message has no name");
        f.finish().await;
    }
}

/// JSON may escape a NUL anywhere in an event; PostgreSQL's jsonb refuses it,
/// and its search index parses the event: the event is stored all the same
/// (and stays out of PostgreSQL's search), the others are found as before.
#[tokio::test]
async fn an_event_with_an_escaped_nul_is_stored() {
    for f in fixtures().await {
        let s = &f.storage;
        let mut nul = stored(1, "$nul", "!n:x", None, 0);
        nul.json = r#"{"content":{"body":"kiwi","formatted_body":"<b>kiwi</b>\u0000"}}"#.into();
        let mut plain_text = stored(2, "$plain", "!n:x", None, 0);
        plain_text.json = r#"{"content":{"body":"kiwi too"}}"#.into();
        s.persist_events(&[NewEvent { search: Some(("content.body", "kiwi")), ..plain(&nul) }]).await.unwrap();
        s.persist_events(&[NewEvent { search: Some(("content.body", "kiwi too")), ..plain(&plain_text) }])
            .await
            .unwrap();
        assert_eq!(s.get_event("$nul").await.unwrap().unwrap().json, nul.json, "{}", s.engine());
        let rooms = ["!n:x".to_owned()];
        let (hits, _) = s.search_events(&rooms, "kiwi", &["content.body".to_owned()], true, 0, 10).await.unwrap();
        assert!(hits.iter().any(|h| h.event.event_id == "$plain"), "{}", s.engine());
        f.finish().await;
    }
}

/// A NUL in a value stored as text: SQLite keeps it; PostgreSQL refuses it,
/// and the API answers that with 400 M_BAD_JSON instead of a 500.
#[tokio::test]
async fn a_nul_in_stored_text_is_kept_or_refused_as_bad_input() {
    for f in fixtures().await {
        let s = &f.storage;
        let named = NewUser { displayname: Some("a\0b"), ..user("@nul:x") };
        match s.create_user(&named).await {
            Ok(created) => assert!(created && s.engine() == "sqlite", "{}", s.engine()),
            Err(e) => {
                assert_eq!(s.engine(), "postgres");
                let error = crate::error::Error::from(e);
                assert_eq!((error.status.as_u16(), error.errcode), (400, "M_BAD_JSON"));
            }
        }
        f.finish().await;
    }
}
