//! URL previews: off by default, never fetching loopback or private addresses
//! unless allowed, and OpenGraph data with the image stored as media when allowed.

mod media_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use complement_tests::{Client, TestServer, assert_err, assert_ok, enc};
use image::ImageFormat;
use media_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A tiny HTTP server on 127.0.0.1: `/page` (HTML with OpenGraph tags and a
/// relative image), `/img.png`, `/redirect` (to a private address), `/big`
/// (more than the size limit). Returns its base URL and a request counter.
async fn web_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let image = image_bytes(64, 48, ImageFormat::Png);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let image = image.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, content_type, body, extra): (&str, &str, Vec<u8>, String) = match path.as_str() {
                    "/page" => (
                        "200 OK",
                        "text/html; charset=utf-8",
                        br#"<html><head><title>Fallback</title>
                            <meta property="og:title" content="A &quot;test&quot; page">
                            <meta property="og:description" content="Described.">
                            <meta property="og:image" content="/img.png"></head><body>hi</body></html>"#
                            .to_vec(),
                        String::new(),
                    ),
                    "/img.png" => ("200 OK", "image/png", image, String::new()),
                    "/redirect" => ("302 Found", "text/plain", Vec::new(), "Location: http://10.0.0.1/\r\n".into()),
                    "/big" => ("200 OK", "image/png", vec![0u8; 200_000], String::new()),
                    _ => ("404 Not Found", "text/plain", b"no".to_vec(), String::new()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    (base, hits)
}

async fn preview(client: &Client, url: &str) -> complement_tests::Resp {
    client.get(&format!("/_matrix/client/v1/media/preview_url?url={}", enc(url))).await
}

#[tokio::test]
async fn previews_are_off_by_default() {
    let (base, hits) = web_server().await;
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-alice").await;
    assert_err(&preview(&alice, &format!("{base}/page")).await, 403, "M_FORBIDDEN");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let raw =
        get(&alice.with_token(None), "/_matrix/client/v1/media/preview_url?url=http%3A%2F%2Fexample.org", &[]).await;
    raw.assert_error(401, "M_MISSING_TOKEN").assert_secure();
}

#[tokio::test]
async fn loopback_and_private_targets_are_refused() {
    let (base, hits) = web_server().await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    let server = TestServer::builder().env("KITH_MEDIA__URL_PREVIEW__ENABLED", "true").start().await;
    let alice = server.register("alice", "password-alice").await;
    for url in [
        format!("{base}/page"),
        format!("http://localhost:{port}/page"),
        format!("http://[::1]:{port}/page"),
        format!("http://[::ffff:127.0.0.1]:{port}/page"),
        format!("http://2130706433:{port}/page"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/".to_owned(),
    ] {
        assert_err(&preview(&alice, &url).await, 403, "M_FORBIDDEN");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a refused target was contacted");
    // Not http(s), or not a URL at all.
    assert_err(&preview(&alice, "file:///etc/passwd").await, 400, "M_INVALID_PARAM");
    assert_err(&preview(&alice, "not a url").await, 400, "M_INVALID_PARAM");
    assert_err(&alice.get("/_matrix/client/v1/media/preview_url").await, 400, "M_MISSING_PARAM");
}

#[tokio::test]
async fn previews_of_allowed_targets() {
    let (base, hits) = web_server().await;
    let server = TestServer::builder()
        .env("KITH_MEDIA__URL_PREVIEW__ENABLED", "true")
        .env("KITH_MEDIA__URL_PREVIEW__ALLOWED_IP_RANGES", r#"["127.0.0.0/8"]"#)
        .env("KITH_MEDIA__URL_PREVIEW__MAX_BYTES", "100000")
        .start()
        .await;
    let alice = server.register("alice", "password-alice").await;

    let body = assert_ok(preview(&alice, &format!("{base}/page")).await);
    assert_eq!(body["og:title"], "A \"test\" page");
    assert_eq!(body["og:description"], "Described.");
    assert_eq!(body["og:image:width"], 64);
    assert_eq!(body["og:image:height"], 48);
    let image = image_bytes(64, 48, ImageFormat::Png);
    assert_eq!(body["matrix:image:size"], image.len());
    let uri = body["og:image"].as_str().unwrap_or_else(|| panic!("no og:image in {body}"));
    assert_eq!(get(&alice, &download_path(uri), &[]).await.body, image);

    // An image URL previews as that image.
    let body = assert_ok(preview(&alice, &format!("{base}/img.png")).await);
    assert!(body["og:image"].as_str().is_some_and(|u| u.starts_with("mxc://localhost/")), "{body}");

    // The same URL again comes from the cache.
    let before = hits.load(Ordering::SeqCst);
    assert_ok(preview(&alice, &format!("{base}/page")).await);
    assert_eq!(hits.load(Ordering::SeqCst), before);

    // A redirect to an address that is not allowed is not followed.
    assert_err(&preview(&alice, &format!("{base}/redirect")).await, 403, "M_FORBIDDEN");
    // A body over the size limit is cut: an image cut short is not used.
    let body = assert_ok(preview(&alice, &format!("{base}/big")).await);
    assert!(body.get("og:image").is_none(), "{body}");
    // Errors of the target are 502.
    assert_err(&preview(&alice, &format!("{base}/missing")).await, 502, "M_UNKNOWN");
}
