//! The server binary's CLI and configuration handling, and its database checks.

use std::process::Stdio;
use std::time::Duration;

use complement_tests::{CliOutput, TestServer, assert_err, errcode, kith_bin};
use reqwest::StatusCode;
use sqlx::Connection;

/// Runs the kith binary with only the given `KITH_*` environment.
async fn run_kith(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut cmd = tokio::process::Command::new(kith_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KITH_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("`kith {}` still running after 30 s", args.join(" ")))
        .expect("run kith");
    CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn cli_creates_users() {
    let server = TestServer::start().await;
    let pw = server.write_file("bob.pw", "bob-password");
    server.cli(&["user", "create", "bob", "--password-file", pw.to_str().expect("utf-8 path")]).await.assert_success();
    server.client().login("bob", "bob-password").await;

    let pw = server.write_file("root.pw", "root-password");
    server
        .cli(&["user", "create", "root", "--password-file", pw.to_str().expect("utf-8 path"), "--admin"])
        .await
        .assert_success();
    server.client().login("root", "root-password").await;
}

#[tokio::test]
async fn cli_refuses_to_create_an_existing_user() {
    let server = TestServer::start().await;
    server.register("bob", "bob-password").await;
    let pw = server.write_file("bob.pw", "other-password");
    let out = server.cli(&["user", "create", "bob", "--password-file", pw.to_str().expect("utf-8 path")]).await;
    assert!(!out.status.success(), "creating an existing user succeeded:\n{}", out.combined());
    server.client().login("bob", "bob-password").await;
}

#[tokio::test]
async fn cli_resets_passwords() {
    let server = TestServer::start().await;
    server.register("bob", "old-password").await;
    let pw = server.write_file("new.pw", "new-password");
    server
        .cli(&["user", "reset-password", "bob", "--password-file", pw.to_str().expect("utf-8 path")])
        .await
        .assert_success();
    assert_err(&server.client().login_raw("bob", "old-password").await, 403, "M_FORBIDDEN");
    server.client().login("bob", "new-password").await;
}

#[tokio::test]
async fn cli_deactivates_users() {
    let server = TestServer::start().await;
    let bob = server.register("bob", "bob-password").await;
    server.cli(&["user", "deactivate", "bob"]).await.assert_success();
    let (status, body) = server.client().login_raw("bob", "bob-password").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(["M_USER_DEACTIVATED", "M_FORBIDDEN"].contains(&errcode(&body)), "{body}");
    assert_err(&bob.whoami().await, 401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn generate_config_prints_valid_toml() {
    let out = run_kith(&["--generate-config"], &[]).await;
    out.assert_success();
    let parsed: toml::Table =
        out.stdout.parse().unwrap_or_else(|e| panic!("--generate-config output is not TOML: {e}\n{}", out.stdout));
    assert!(parsed.contains_key("server_name"), "{}", out.stdout);
    assert!(parsed.get("listen").and_then(|l| l.get("client")).is_some(), "{}", out.stdout);
}

#[tokio::test]
async fn generated_config_starts_a_server() {
    let out = run_kith(&["--generate-config"], &[]).await;
    out.assert_success();
    let server = TestServer::builder().config_file(out.stdout).start().await;
    assert_eq!(server.client().get("/_matrix/client/versions").await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_config_names_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kith.toml");
    std::fs::write(&path, "bogus = 1\n\n[listen]\nclient = \"not-an-address\"\n").expect("write config");
    let data_dir = dir.path().join("data");
    let out = run_kith(
        &["--config", path.to_str().expect("utf-8 path")],
        &[("KITH_DATA_DIR", data_dir.to_str().expect("utf-8 path")), ("KITH_LISTEN__METRICS", "127.0.0.1:0")],
    )
    .await;
    assert!(!out.status.success(), "kith started with a bad config:\n{}", out.combined());
    let text = out.combined();
    assert!(text.contains("bogus"), "the error does not name `bogus`:\n{text}");
    assert!(text.contains("listen.client"), "the error does not name `listen.client`:\n{text}");
}

#[tokio::test]
async fn bad_environment_value_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_kith(
        &[],
        &[
            ("KITH_DATA_DIR", dir.path().to_str().expect("utf-8 path")),
            ("KITH_REGISTRATION__MODE", "sometimes"),
            ("KITH_LISTEN__CLIENT", "127.0.0.1:0"),
            ("KITH_LISTEN__METRICS", "127.0.0.1:0"),
        ],
    )
    .await;
    assert!(!out.status.success(), "kith started with a bad mode:\n{}", out.combined());
    assert!(out.combined().contains("registration.mode"), "{}", out.combined());
}

#[tokio::test]
async fn refuses_a_database_newer_than_itself() {
    let mut server = TestServer::start().await;
    server.register("alice", "password-a").await;
    server.stop().await;

    match server.database_url() {
        Some(url) => {
            let mut conn = complement_tests::db::connect(&url).await;
            sqlx::raw_sql(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (99999999, 'from the future', TRUE, decode('00', 'hex'), 0)",
            )
            .execute(&mut conn)
            .await
            .expect("insert a future migration (is there a _sqlx_migrations table?)");
            let _ = conn.close().await;
        }
        None => {
            let file = server.data_dir().join("kith.db");
            assert!(file.exists(), "no SQLite database at {}", file.display());
            let mut conn =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display())).await.expect("open kith.db");
            sqlx::raw_sql(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (99999999, 'from the future', 1, X'00', 0)",
            )
            .execute(&mut conn)
            .await
            .expect("insert a future migration (is there a _sqlx_migrations table?)");
            let _ = conn.close().await;
        }
    }

    let failure = match server.try_start_again().await {
        Ok(()) => panic!("kith started on a database with a migration from the future:\n{}", server.output()),
        Err(failure) => failure,
    };
    let status = failure.status.unwrap_or_else(|| panic!("kith hung instead of exiting:\n{}", failure.output));
    assert!(!status.success(), "kith exited with 0:\n{}", failure.output);
    assert!(
        failure.output.to_lowercase().contains("newer"),
        "the output does not say the database is newer:\n{}",
        failure.output
    );
}
