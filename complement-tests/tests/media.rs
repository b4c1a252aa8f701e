//! The media repository: uploads and downloads byte for byte, the security
//! headers of every media response, content disposition, ranges, caching
//! headers, authentication, the legacy paths, asynchronous uploads, size
//! limits and quotas, and deletion with the admin CLI.

mod media_support;

use std::time::Duration;

use complement_tests::{TestServer, assert_err, assert_ok};
use media_support::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn upload_and_download_round_trip_with_safe_headers() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-alice").await;
    let bob = server.register("bob", "password-bob").await;

    // Small (served from memory) and large (streamed from disk) files, byte for byte.
    for (len, seed) in [(0usize, 1u64), (1000, 2), (300_000, 3), (3_000_000, 4)] {
        let bytes = noise(len, seed);
        let uri = upload(&alice, bytes.clone(), "application/octet-stream", Some("data file.bin")).await;
        let raw = get(&bob, &download_path(&uri), &[]).await;
        assert_eq!(raw.status, 200);
        assert_eq!(raw.body.len(), len);
        assert!(raw.body == bytes, "{len} bytes came back different");
        raw.assert_secure();
        assert_eq!(raw.header("content-type"), "application/octet-stream");
        assert_eq!(raw.header("content-length"), len.to_string());
        assert_eq!(raw.header("accept-ranges"), "bytes");
        assert!(raw.header("cache-control").contains("immutable"), "{}", raw.header("cache-control"));
        assert_eq!(
            raw.header("content-disposition"),
            "attachment; filename=\"data file.bin\"; filename*=utf-8''data%20file.bin"
        );
        let etag = raw.header("etag").to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
        // A client that has it gets 304, still with the security headers.
        let again = get(&bob, &download_path(&uri), &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, 304);
        again.assert_secure();
    }

    // The file name in the path overrides the uploaded one, escaped per RFC 6266.
    let uri = upload(&alice, b"hello".to_vec(), "text/plain", Some("a.txt")).await;
    let raw = get(&alice, &format!("{}/na%C3%AFve%20%22x%22.txt", download_path(&uri)), &[]).await;
    assert_eq!(raw.body, b"hello");
    assert_eq!(
        raw.header("content-disposition"),
        "inline; filename=\"na_ve _x_.txt\"; filename*=utf-8''na%C3%AFve%20%22x%22.txt"
    );

    // Only types that cannot run script are inline; HTML and SVG are attachments.
    for (content_type, disposition) in [
        ("text/html", "attachment"),
        ("image/svg+xml", "attachment"),
        ("application/javascript", "attachment"),
        ("text/html; charset=utf-8", "attachment"),
        ("image/png", "inline"),
        ("video/mp4", "inline"),
        ("audio/ogg", "inline"),
        ("text/plain; charset=utf-8", "inline"),
    ] {
        let uri = upload(&alice, b"<script>alert(1)</script>".to_vec(), content_type, None).await;
        let raw = get(&bob, &download_path(&uri), &[]).await;
        raw.assert_secure();
        assert_eq!(raw.header("content-disposition"), disposition, "{content_type}");
        assert_eq!(raw.header("content-type"), content_type);
    }

    // Identical uploads are stored once.
    let before = stored_files(server.data_dir());
    let a = upload(&alice, noise(5000, 99), "application/octet-stream", None).await;
    let b = upload(&bob, noise(5000, 99), "application/octet-stream", None).await;
    assert_ne!(a, b);
    assert_eq!(stored_files(server.data_dir()), before + 1);

    // The v1 paths need an access token; every error still has the security headers.
    let anonymous = alice.with_token(None);
    get(&anonymous, &download_path(&uri), &[]).await.assert_error(401, "M_MISSING_TOKEN").assert_secure();
    get(&anonymous, &thumbnail_path(&uri, "width=32&height=32"), &[])
        .await
        .assert_error(401, "M_MISSING_TOKEN")
        .assert_secure();
    get(&anonymous, "/_matrix/client/v1/media/config", &[]).await.assert_error(401, "M_MISSING_TOKEN").assert_secure();
    let bad = alice.with_token(Some("not-a-token"));
    get(&bad, &download_path(&uri), &[]).await.assert_error(401, "M_UNKNOWN_TOKEN").assert_secure();
    let status = anonymous.send_raw(Method::POST, "/_matrix/media/v3/upload", "text/plain", "x").await;
    assert_err(&status, 401, "M_MISSING_TOKEN");

    // Unknown media, and media of other servers (no federation yet), are 404.
    get(&bob, "/_matrix/client/v1/media/download/localhost/nosuchmedia", &[])
        .await
        .assert_error(404, "M_NOT_FOUND")
        .assert_secure();
    let other = download_path(&uri).replace("/localhost/", "/other.example/");
    get(&bob, &other, &[]).await.assert_error(404, "M_NOT_FOUND");

    // The legacy unauthenticated paths serve nothing by default (no switch-over time set).
    let legacy = format!("/_matrix/media/v3/download/{}", mxc_path(&uri));
    get(&anonymous, &legacy, &[]).await.assert_error(404, "M_NOT_FOUND").assert_secure();

    // Config, on both paths.
    for path in ["/_matrix/client/v1/media/config", "/_matrix/media/v3/config"] {
        let body = assert_ok(alice.get(path).await);
        assert_eq!(body["m.upload.size"], json!(50 * 1024 * 1024));
    }
}

#[tokio::test]
async fn legacy_paths_serve_media_from_before_the_switch_over() {
    let server = TestServer::builder().env("KITH_MEDIA__LEGACY_DOWNLOAD_BEFORE_TS", "99999999999999").start().await;
    let alice = server.register("alice", "password-alice").await;
    let uri = upload(&alice, image_bytes(100, 80, image::ImageFormat::Png), "image/png", Some("pic.png")).await;
    let anonymous = alice.with_token(None);
    let raw = get(&anonymous, &format!("/_matrix/media/v3/download/{}", mxc_path(&uri)), &[]).await;
    assert_eq!(raw.status, 200);
    raw.assert_secure();
    assert_eq!(raw.header("content-disposition"), "inline; filename=\"pic.png\"; filename*=utf-8''pic.png");
    let raw =
        get(&anonymous, &format!("/_matrix/media/v3/thumbnail/{}?width=32&height=32&method=crop", mxc_path(&uri)), &[])
            .await;
    assert_eq!(raw.status, 200);
    assert_eq!(dimensions(&raw.body).1, 32);
}

#[tokio::test]
async fn range_requests() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-alice").await;
    // A small file (from memory) and a large one (streamed from disk).
    for len in [1000usize, 2_500_000] {
        let bytes = noise(len, len as u64);
        let uri = upload(&alice, bytes.clone(), "audio/ogg", None).await;
        let path = download_path(&uri);
        let cases: [(&str, usize, usize); 5] = [
            ("bytes=0-99", 0, 99),
            ("bytes=500-", 500, len - 1),
            ("bytes=-100", len - 100, len - 1),
            ("bytes=10-10", 10, 10),
            ("bytes=900-99999999", 900, len - 1),
        ];
        for (range, start, end) in cases {
            let raw = get(&alice, &path, &[("range", range)]).await;
            assert_eq!(raw.status, 206, "{range}");
            raw.assert_secure();
            assert_eq!(raw.header("content-range"), format!("bytes {start}-{end}/{len}"), "{range}");
            assert_eq!(raw.header("content-length"), (end - start + 1).to_string());
            assert!(raw.body == bytes[start..=end], "{range} of {len}: wrong bytes");
        }
        for unsatisfiable in [format!("bytes={len}-"), format!("bytes={}-{}", len + 5, len + 10), "bytes=-0".to_owned()]
        {
            let raw = get(&alice, &path, &[("range", &unsatisfiable)]).await;
            assert_eq!(raw.status, 416, "{unsatisfiable}");
            raw.assert_secure();
            assert_eq!(raw.header("content-range"), format!("bytes */{len}"));
        }
        // Several ranges, or a stale If-Range, get the whole file.
        let raw = get(&alice, &path, &[("range", "bytes=0-1,5-6")]).await;
        assert_eq!((raw.status, raw.body.len()), (200, len));
        let raw = get(&alice, &path, &[("range", "bytes=0-1"), ("if-range", "\"stale\"")]).await;
        assert_eq!((raw.status, raw.body.len()), (200, len));
        let etag = raw.header("etag").to_owned();
        let raw = get(&alice, &path, &[("range", "bytes=0-1"), ("if-range", &etag)]).await;
        assert_eq!((raw.status, raw.body.len()), (206, 2));
    }
}

#[tokio::test]
async fn asynchronous_upload_flow_and_errors() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-alice").await;
    let bob = server.register("bob", "password-bob").await;

    let created = assert_ok(alice.post("/_matrix/media/v1/create", json!({})).await);
    let uri = created["content_uri"].as_str().unwrap().to_owned();
    let expires = created["unused_expires_at"].as_i64().unwrap();
    let now = complement_tests::now_ms() as i64;
    assert!(expires > now + 23 * 3600 * 1000 && expires <= now + 24 * 3600 * 1000 + 60_000, "{expires}");
    let put_path = format!("/_matrix/media/v3/upload/{}", mxc_path(&uri));

    // Not yet uploaded: a download waits timeout_ms, then 504 M_NOT_YET_UPLOADED.
    let started = std::time::Instant::now();
    get(&bob, &format!("{}?timeout_ms=300", download_path(&uri)), &[])
        .await
        .assert_error(504, "M_NOT_YET_UPLOADED")
        .assert_secure();
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Only the creator may upload.
    assert_err(&bob.send_raw(Method::PUT, &put_path, "text/plain", "intruder").await, 403, "M_FORBIDDEN");

    // A waiting download gets the content as soon as it is uploaded.
    let waiter = {
        let bob = bob.clone();
        let path = format!("{}?timeout_ms=10000", download_path(&uri));
        tokio::spawn(async move { get(&bob, &path, &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body =
        assert_ok(alice.send_raw(Method::PUT, &format!("{put_path}?filename=late.txt"), "text/plain", "finally").await);
    assert_eq!(body, json!({}));
    let raw = waiter.await.unwrap();
    assert_eq!((raw.status, raw.body.as_slice()), (200, b"finally".as_slice()));
    assert_eq!(raw.header("content-disposition"), "inline; filename=\"late.txt\"; filename*=utf-8''late.txt");

    // Once uploaded, it cannot be overwritten.
    assert_err(&alice.send_raw(Method::PUT, &put_path, "text/plain", "again").await, 409, "M_CANNOT_OVERWRITE_MEDIA");
    // Ids that were never created, or of other servers, are 404.
    assert_err(
        &alice.send_raw(Method::PUT, "/_matrix/media/v3/upload/localhost/nosuchid", "text/plain", "x").await,
        404,
        "M_NOT_FOUND",
    );
    let other = put_path.replace("/localhost/", "/other.example/");
    assert_err(&alice.send_raw(Method::PUT, &other, "text/plain", "x").await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn pending_uploads_are_limited_and_lapse() {
    let server = TestServer::builder()
        .env("KITH_MEDIA__MAX_PENDING_UPLOADS", "2")
        .env("KITH_MEDIA__PENDING_UPLOAD_LIFETIME_SECS", "1")
        .start()
        .await;
    let alice = server.register("alice", "password-alice").await;
    let first = assert_ok(alice.post("/_matrix/media/v1/create", json!({})).await);
    assert_ok(alice.post("/_matrix/media/v1/create", json!({})).await);
    let resp = alice.post("/_matrix/media/v1/create", json!({})).await;
    assert_err(&resp, 429, "M_LIMIT_EXCEEDED");
    assert!(resp.1["retry_after_ms"].is_u64(), "{}", resp.1);

    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Lapsed ids no longer count, and can no longer be uploaded to or waited for.
    assert_ok(alice.post("/_matrix/media/v1/create", json!({})).await);
    let uri = first["content_uri"].as_str().unwrap();
    let put_path = format!("/_matrix/media/v3/upload/{}", mxc_path(uri));
    assert_err(&alice.send_raw(Method::PUT, &put_path, "text/plain", "late").await, 404, "M_NOT_FOUND");
    get(&alice, &download_path(uri), &[]).await.assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn upload_size_limit_and_quota() {
    let server = TestServer::builder()
        .env("KITH_MEDIA__MAX_UPLOAD_BYTES", "100000")
        .env("KITH_MEDIA__USER_QUOTA_BYTES", "250000")
        .start()
        .await;
    let alice = server.register("alice", "password-alice").await;
    let body = assert_ok(alice.get("/_matrix/client/v1/media/config").await);
    assert_eq!(body["m.upload.size"], 100000);

    let resp =
        alice.send_raw(Method::POST, "/_matrix/media/v3/upload", "application/octet-stream", noise(100_001, 1)).await;
    assert_err(&resp, 413, "M_TOO_LARGE");
    // Without a Content-Length (a chunked stream), the limit holds too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..30).map(|i| Ok(noise(10_000, i))).collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let resp = alice.send_raw(Method::POST, "/_matrix/media/v3/upload", "application/octet-stream", stream).await;
    assert_err(&resp, 413, "M_TOO_LARGE");
    // The same limit applies to an asynchronous upload.
    let created = assert_ok(alice.post("/_matrix/media/v1/create", json!({})).await);
    let put_path = format!("/_matrix/media/v3/upload/{}", mxc_path(created["content_uri"].as_str().unwrap()));
    assert_err(&alice.send_raw(Method::PUT, &put_path, "text/plain", noise(100_001, 5)).await, 413, "M_TOO_LARGE");
    // Nothing of the refused uploads is left behind.
    assert_eq!(stored_files(server.data_dir()), 0);

    // Exactly at the limit is fine; the quota stops the third.
    upload(&alice, noise(100_000, 2), "application/octet-stream", None).await;
    upload(&alice, noise(100_000, 3), "application/octet-stream", None).await;
    let resp =
        alice.send_raw(Method::POST, "/_matrix/media/v3/upload", "application/octet-stream", noise(100_000, 4)).await;
    assert_err(&resp, 403, "M_FORBIDDEN");
    let bob = server.register("bob", "password-bob").await;
    upload(&bob, noise(100_000, 4), "application/octet-stream", None).await;
}

#[tokio::test]
async fn admin_cli_deletes_media_and_unshared_content() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-alice").await;
    let bytes = noise(4000, 11);
    let a = upload(&alice, bytes.clone(), "application/octet-stream", None).await;
    let b = upload(&alice, bytes.clone(), "application/octet-stream", None).await;
    let c = upload(&alice, noise(4000, 12), "application/octet-stream", None).await;
    assert_eq!(stored_files(server.data_dir()), 2);

    server.cli(&["media", "delete", &a]).await.assert_success();
    get(&alice, &download_path(&a), &[]).await.assert_error(404, "M_NOT_FOUND");
    // The content is still held by the other id.
    assert_eq!(stored_files(server.data_dir()), 2);
    assert_eq!(get(&alice, &download_path(&b), &[]).await.body, bytes);

    let out = server.cli(&["media", "delete", &a]).await;
    assert!(!out.status.success(), "deleting twice must fail: {}", out.combined());
    let out = server.cli(&["media", "delete", "mxc://other.example/x"]).await;
    assert!(!out.status.success());

    server.cli(&["media", "delete-user-media", "alice"]).await.assert_success();
    assert_eq!(stored_files(server.data_dir()), 0);
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    for uri in [&b, &c] {
        get(&alice, &download_path(uri), &[]).await.assert_error(404, "M_NOT_FOUND");
    }
}
