//! Storage conformance tests, run against SQLite always and against PostgreSQL
//! when `TEST_DATABASE_URL` names a server (CI sets it; a missing server fails).

use std::sync::Arc;

use super::*;

/// A fresh store of each engine under test. Each holds what it needs to clean up.
struct Fixture {
    storage: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
    pg_cleanup: Option<(String, String)>,
}

impl Fixture {
    async fn finish(self) {
        self.storage.close().await;
        if let Some((admin_url, name)) = self.pg_cleanup {
            let pool = sqlx::PgPool::connect(&admin_url).await.expect("connect to PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                .execute(&pool)
                .await
                .unwrap();
        }
    }
}

async fn fixtures() -> Vec<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let mut all = vec![Fixture { storage: open(&url, 4).await.unwrap(), _dir: Some(dir), pg_cleanup: None }];
    if let Ok(server) = std::env::var("TEST_DATABASE_URL") {
        let server = server.trim_end_matches('/').to_owned();
        let admin_url = format!("{server}/postgres");
        let name = format!("kith_unit_{}", crate::service::secrets::random_id(12).to_lowercase());
        let pool = sqlx::PgPool::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&pool).await.unwrap();
        pool.close().await;
        let storage = open(&format!("{server}/{name}"), 4).await.unwrap();
        all.push(Fixture { storage, _dir: None, pg_cleanup: Some((admin_url, name)) });
    }
    all
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
        s.put_account_data("@a:x", "", "m.direct", "{\"a\":1}").await.unwrap();
        s.put_account_data("@a:x", "", "m.direct", "{\"a\":2}").await.unwrap();
        s.put_account_data("@a:x", "!r:x", "m.direct", "{\"room\":true}").await.unwrap();
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
