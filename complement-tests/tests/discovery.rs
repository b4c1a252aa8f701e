//! Server discovery: /versions, .well-known, /capabilities.

use complement_tests::{TestServer, assert_err, assert_ok};
use serde_json::json;

#[tokio::test]
async fn versions_lists_spec_versions() {
    let server = TestServer::start().await;
    let body = assert_ok(server.client().get("/_matrix/client/versions").await);
    let versions = body["versions"].as_array().expect("versions is an array");
    assert!(!versions.is_empty(), "versions is empty: {body}");
    for v in versions {
        let v = v.as_str().unwrap_or_else(|| panic!("version {v} is not a string"));
        assert!(v.starts_with('v') || v.starts_with('r'), "odd version string {v:?}");
    }
    assert!(body["unstable_features"].is_object(), "unstable_features: {body}");
}

#[tokio::test]
async fn versions_works_with_an_access_token() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let body = assert_ok(alice.get("/_matrix/client/versions").await);
    assert!(body["versions"].as_array().is_some_and(|v| !v.is_empty()));
}

#[tokio::test]
async fn well_known_client_is_404_unless_configured() {
    let server = TestServer::start().await;
    let resp = server.client().get("/.well-known/matrix/client").await;
    assert_err(&resp, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn well_known_client_when_configured() {
    let server = TestServer::builder().env("KITH_WELL_KNOWN__CLIENT", "https://example.org").start().await;
    let body = assert_ok(server.client().get("/.well-known/matrix/client").await);
    assert_eq!(body["m.homeserver"]["base_url"], json!("https://example.org"), "{body}");
}

#[tokio::test]
async fn well_known_server_is_404_unless_configured() {
    let server = TestServer::start().await;
    let resp = server.client().get("/.well-known/matrix/server").await;
    assert_err(&resp, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn well_known_server_when_configured() {
    let server = TestServer::builder().env("KITH_WELL_KNOWN__SERVER", "example.org:443").start().await;
    let body = assert_ok(server.client().get("/.well-known/matrix/server").await);
    assert_eq!(body, json!({ "m.server": "example.org:443" }));
}

#[tokio::test]
async fn capabilities_require_auth() {
    let server = TestServer::start().await;
    let resp = server.client().get("/_matrix/client/v3/capabilities").await;
    assert_err(&resp, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn capabilities_list_the_standard_ones() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let body = assert_ok(alice.get("/_matrix/client/v3/capabilities").await);
    let caps = &body["capabilities"];
    assert!(caps.is_object(), "no capabilities object: {body}");

    assert_eq!(caps["m.change_password"]["enabled"], json!(true), "{body}");
    for name in ["m.set_displayname", "m.set_avatar_url", "m.3pid_changes"] {
        assert!(caps[name]["enabled"].is_boolean(), "{name}.enabled missing: {body}");
    }

    let rv = &caps["m.room_versions"];
    let default = rv["default"].as_str().unwrap_or_else(|| panic!("no default room version: {body}"));
    let available = rv["available"].as_object().unwrap_or_else(|| panic!("no available: {body}"));
    assert!(!available.is_empty());
    for (version, stability) in available {
        assert!(stability == "stable" || stability == "unstable", "room version {version} has stability {stability}");
    }
    assert_eq!(available.get(default), Some(&json!("stable")), "default must be available and stable: {body}");
}
