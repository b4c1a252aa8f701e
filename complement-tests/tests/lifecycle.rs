//! Server lifecycle: signing keys, health, metrics, restart, graceful stop.

use complement_tests::{Client, SERVER_NAME, TestServer, assert_ok, now_ms};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn server_keys(server: &TestServer) -> Value {
    assert_ok(server.client().get("/_matrix/key/v2/server").await)
}

/// The single `ed25519:` key id and its public key.
fn ed25519_key(keys: &Value) -> (String, String) {
    let verify = keys["verify_keys"].as_object().unwrap_or_else(|| panic!("no verify_keys: {keys}"));
    let (id, key) =
        verify.iter().find(|(id, _)| id.starts_with("ed25519:")).unwrap_or_else(|| panic!("no ed25519 key: {keys}"));
    let key = key["key"].as_str().unwrap_or_else(|| panic!("key without `key`: {keys}"));
    (id.clone(), key.to_owned())
}

#[tokio::test]
async fn server_signing_keys_are_published() {
    let server = TestServer::start().await;
    let keys = server_keys(&server).await;
    assert_eq!(keys["server_name"], json!(SERVER_NAME));
    let (id, key) = ed25519_key(&keys);
    assert!(id.len() > "ed25519:".len(), "empty key version: {id}");
    // Unpadded base64 of a 32-byte key.
    assert_eq!(key.len(), 43, "ed25519 public key {key:?} is not 32 bytes of unpadded base64");
    let valid_until = keys["valid_until_ts"].as_u64().unwrap_or_else(|| panic!("no valid_until_ts: {keys}"));
    assert!(valid_until > now_ms(), "valid_until_ts {valid_until} is in the past");
    assert!(keys["signatures"][SERVER_NAME][&id].is_string(), "no signature by {SERVER_NAME}/{id}: {keys}");
}

#[tokio::test]
async fn signing_key_survives_restart() {
    let mut server = TestServer::start().await;
    let before = ed25519_key(&server_keys(&server).await);
    server.restart().await;
    let after = ed25519_key(&server_keys(&server).await);
    assert_eq!(before, after, "the signing key changed across a restart");
}

#[tokio::test]
async fn health_endpoint() {
    let server = TestServer::start().await;
    let resp = Client::new(server.metrics_url()).get("/health").await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);
}

async fn metrics_text(server: &TestServer) -> String {
    let resp = reqwest::get(format!("{}/metrics", server.metrics_url())).await.expect("GET /metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.expect("metrics body")
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let server = TestServer::start().await;
    let client = server.client();
    for _ in 0..3 {
        assert_ok(client.get("/_matrix/client/versions").await);
    }
    let text = metrics_text(&server).await;
    let versions_count: f64 = text
        .lines()
        .filter(|l| l.starts_with("kith_http_requests_total{") && l.contains(r#"endpoint="/_matrix/client/versions""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        versions_count >= 3.0,
        "expected kith_http_requests_total for /_matrix/client/versions >= 3, got {versions_count}:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("kith_http_request_duration_seconds")
            && l.contains(r#"endpoint="/_matrix/client/versions""#)),
        "no kith_http_request_duration_seconds for /_matrix/client/versions:\n{text}"
    );
}

#[tokio::test]
async fn metrics_label_routes_by_template() {
    let server = TestServer::start().await;
    let alice = server.register("metricsuser", "password-m").await;
    assert_ok(alice.get(&format!("/_matrix/client/v3/profile/{}", alice.user_id)).await);
    assert_ok(alice.get(&format!("/_matrix/client/v3/devices/{}", alice.device_id)).await);
    let text = metrics_text(&server).await;
    assert!(text.contains("kith_http_requests_total"), "{text}");
    assert!(
        !text.contains("metricsuser") && !text.contains(&alice.device_id),
        "metrics labels contain concrete path parameters (unbounded cardinality):\n{text}"
    );
}

#[tokio::test]
async fn data_survives_restart() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let token = alice.token.clone();
    server.restart().await;

    let client = server.client();
    client.login("alice", "password-a").await;
    let same = client.with_token(token.as_deref());
    let who = assert_ok(same.whoami().await);
    assert_eq!(who["user_id"], json!(alice.user_id), "access token lost across restart");
    assert_eq!(who["device_id"], json!(alice.device_id));
}

#[tokio::test]
async fn sigterm_exits_cleanly() {
    let mut server = TestServer::start().await;
    server.register("alice", "password-a").await;
    // stop() asserts exit status 0 within 10 s.
    server.stop().await;
}
