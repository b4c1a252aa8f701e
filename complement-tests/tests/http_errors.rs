//! Authentication of requests, error responses, limits and CORS.

use std::time::Duration;

use complement_tests::{TestServer, assert_err, assert_ok};
use reqwest::{Method, StatusCode};
use serde_json::json;

const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

#[tokio::test]
async fn bearer_header_and_query_parameter_both_authenticate() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    assert_ok(alice.whoami().await);
    let token = alice.token.clone().expect("token");
    let anon = server.client();
    let body = assert_ok(anon.get(&format!("{WHOAMI}?access_token={token}")).await);
    assert_eq!(body["user_id"], json!(alice.user_id));
}

#[tokio::test]
async fn missing_token_is_m_missing_token() {
    let server = TestServer::start().await;
    assert_err(&server.client().get(WHOAMI).await, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn unknown_token_is_m_unknown_token() {
    let server = TestServer::start().await;
    let garbage = server.client().with_token(Some("garbage-token"));
    assert_err(&garbage.whoami().await, 401, "M_UNKNOWN_TOKEN");
    let query = server.client().get(&format!("{WHOAMI}?access_token=garbage-token")).await;
    assert_err(&query, 401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn unknown_endpoint_is_m_unrecognized() {
    let server = TestServer::start().await;
    let client = server.client();
    assert_err(&client.get("/_matrix/client/v3/no_such_endpoint").await, 404, "M_UNRECOGNIZED");
    assert_err(&client.post("/_matrix/client/v3/no/such/endpoint", json!({})).await, 404, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn wrong_method_is_405_m_unrecognized() {
    let server = TestServer::start().await;
    let resp = server.client().delete("/_matrix/client/v3/login", None).await;
    assert_err(&resp, 405, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn body_that_is_not_json_is_m_not_json() {
    let server = TestServer::start().await;
    let resp = server
        .client()
        .send_raw(Method::POST, "/_matrix/client/v3/login", "application/json", "this is {not json")
        .await;
    assert_err(&resp, 400, "M_NOT_JSON");
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_m_bad_json() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let resp =
        alice.put(&format!("/_matrix/client/v3/devices/{}", alice.device_id), json!({ "display_name": 42 })).await;
    assert_err(&resp, 400, "M_BAD_JSON");
}

#[tokio::test]
async fn oversized_body_is_m_too_large() {
    let server = TestServer::builder().env("KITH_LIMITS__MAX_REQUEST_BODY_BYTES", "1024").start().await;
    let alice = server.register("alice", "password-a").await;
    let big = json!({ "padding": "x".repeat(4096) });
    let path =
        format!("/_matrix/client/v3/user/{}/account_data/org.example.big", complement_tests::enc(&alice.user_id));
    assert_err(&alice.put(&path, big).await, 413, "M_TOO_LARGE");
    // A small body on the same endpoint is fine.
    let resp = alice.put(&path, json!({ "padding": "x" })).await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);
}

#[tokio::test]
async fn bad_logins_are_rate_limited() {
    let server = TestServer::builder().env("KITH_RATE_LIMITS__ENABLED", "true").start().await;
    let client = server.client();
    let mut limited = None;
    for _ in 0..40 {
        let (status, body) = client.login_raw("nobody", "wrong").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(body);
            break;
        }
        assert_err(&(status, body), 403, "M_FORBIDDEN");
    }
    let body = limited.expect("40 quick bad logins were never rate-limited");
    assert_eq!(body["errcode"], json!("M_LIMIT_EXCEEDED"), "{body}");
    let retry = body["retry_after_ms"].as_u64().unwrap_or_else(|| panic!("no retry_after_ms: {body}"));
    assert!(retry > 0 && retry <= 60_000, "odd retry_after_ms {retry}");
}

#[tokio::test]
async fn cors_preflight() {
    let server = TestServer::start().await;
    let client = server.client();
    let resp = client
        .http
        .request(Method::OPTIONS, client.url("/_matrix/client/v3/login"))
        .header("Origin", "https://app.example.org")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("OPTIONS request");
    assert!(resp.status().is_success(), "preflight status {}", resp.status());
    let header =
        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    assert_eq!(header("access-control-allow-origin"), "*");
    let methods = header("access-control-allow-methods");
    for m in ["get", "post", "put", "delete", "options"] {
        assert!(methods.split(',').any(|x| x.trim() == m), "allow-methods {methods:?} lacks {m}");
    }
    let headers = header("access-control-allow-headers");
    for h in ["authorization", "content-type"] {
        assert!(
            headers.split(',').any(|x| x.trim() == h),
            "allow-headers {headers:?} lacks {h} (\"*\" does not cover Authorization)"
        );
    }
}

#[tokio::test]
async fn normal_responses_carry_cors_headers() {
    let server = TestServer::start().await;
    let client = server.client();
    for path in ["/_matrix/client/versions", "/_matrix/client/v3/account/whoami"] {
        let resp = client
            .http
            .get(client.url(path))
            .header("Origin", "https://app.example.org")
            .send()
            .await
            .expect("request");
        assert_eq!(
            resp.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
            Some("*"),
            "{path} ({}) has no Access-Control-Allow-Origin: *",
            resp.status()
        );
    }
}
