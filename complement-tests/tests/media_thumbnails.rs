//! Thumbnails: the recommended sizes and both methods (checked by decoding the
//! result), never upscaling, animated thumbnails, and images that must get no
//! thumbnail (not images, malformed, decompression bombs) without harm to the server.

mod media_support;

use std::time::{Duration, Instant};

use complement_tests::{Client, TestServer, assert_ok};
use image::ImageFormat;
use image::codecs::gif::GifDecoder;
use media_support::*;

/// GET a thumbnail; asserts 200, the security headers and an inline disposition.
async fn thumb(client: &Client, uri: &str, query: &str) -> Raw {
    let raw = get(client, &thumbnail_path(uri, query), &[]).await;
    assert_eq!(raw.status, 200, "{query}: {}", String::from_utf8_lossy(&raw.body));
    raw.assert_secure();
    assert!(
        raw.header("content-disposition").starts_with("inline; filename=\"thumbnail."),
        "{}",
        raw.header("content-disposition")
    );
    raw
}

#[tokio::test]
async fn sizes_and_methods() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-alice").await;
    let png = upload(&alice, image_bytes(1200, 900, ImageFormat::Png), "image/png", None).await;
    let wide = upload(&alice, image_bytes(4000, 1000, ImageFormat::Jpeg), "image/jpeg", None).await;

    // (request, expected size): the smallest recommended size that covers the
    // request; scale fits inside it keeping the aspect ratio, crop fills it.
    for (uri, query, expected) in [
        (&png, "width=320&height=240&method=scale", (320, 240)),
        (&png, "width=100&height=100", (320, 240)),
        (&png, "width=321&height=10&method=scale", (640, 480)),
        (&png, "width=800&height=600&method=scale", (800, 600)),
        (&png, "width=32&height=32&method=crop", (32, 32)),
        (&png, "width=50&height=20&method=crop", (96, 96)),
        (&wide, "width=640&height=480&method=scale", (640, 160)),
        (&wide, "width=96&height=96&method=crop", (96, 96)),
    ] {
        let raw = thumb(&alice, uri, query).await;
        let (format, w, h) = dimensions(&raw.body);
        assert_eq!((w, h), expected, "{query}");
        let expected_type = if format == ImageFormat::Png { "image/png" } else { "image/jpeg" };
        assert_eq!(raw.header("content-type"), expected_type);
        assert!(raw.header("cache-control").contains("immutable"));
    }

    // Larger than any thumbnail, or than the image: the original, never upscaled.
    let raw = thumb(&alice, &png, "width=2000&height=2000").await;
    assert_eq!(raw.body, image_bytes(1200, 900, ImageFormat::Png));
    let small_bytes = image_bytes(20, 20, ImageFormat::Png);
    // Uploaded with a misleading type: the original is served as what it is.
    let small = upload(&alice, small_bytes.clone(), "text/html", None).await;
    let raw = thumb(&alice, &small, "width=32&height=32&method=crop").await;
    assert_eq!(raw.body, small_bytes);
    assert_eq!(raw.header("content-type"), "image/png");

    // The recommended sizes are all made and stored on the first request.
    let fresh = upload(&alice, image_bytes(1000, 1000, ImageFormat::Jpeg), "image/jpeg", None).await;
    let before = stored_files(server.data_dir());
    thumb(&alice, &fresh, "width=32&height=32&method=crop").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored_files(server.data_dir()) < before + 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored_files(server.data_dir()), before + 5);
    // ... and served from there.
    let raw = thumb(&alice, &fresh, "width=640&height=480").await;
    assert_eq!(dimensions(&raw.body).1, 480);
    assert_eq!(stored_files(server.data_dir()), before + 5);

    // Bad parameters.
    for (query, status, errcode) in [
        ("width=0&height=10", 400, "M_INVALID_PARAM"),
        ("width=-5&height=10", 400, "M_INVALID_PARAM"),
        ("width=ten&height=10", 400, "M_INVALID_PARAM"),
        ("width=10&height=10&method=stretch", 400, "M_INVALID_PARAM"),
        ("width=10", 400, "M_MISSING_PARAM"),
    ] {
        get(&alice, &thumbnail_path(&png, query), &[]).await.assert_error(status, errcode).assert_secure();
    }
}

#[tokio::test]
async fn content_that_cannot_be_thumbnailed() {
    let server = TestServer::builder().env("KITH_MEDIA__MAX_IMAGE_PIXELS", "4000000").start().await;
    let alice = server.register("alice", "password-alice").await;

    let text = upload(&alice, b"just some text".to_vec(), "text/plain", None).await;
    get(&alice, &thumbnail_path(&text, "width=32&height=32"), &[]).await.assert_error(400, "M_UNKNOWN").assert_secure();

    // A PNG signature and header followed by garbage.
    let mut broken = image_bytes(300, 300, ImageFormat::Png);
    let len = broken.len();
    broken[60..len - 20].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7) as u8);
    let broken = upload(&alice, broken, "image/png", None).await;
    get(&alice, &thumbnail_path(&broken, "width=32&height=32"), &[]).await.assert_error(400, "M_UNKNOWN");

    // A decompression bomb: a tiny file whose header claims 100000 x 100000 pixels.
    let bomb = upload(&alice, png_header_only(100_000, 100_000), "image/png", None).await;
    for _ in 0..3 {
        get(&alice, &thumbnail_path(&bomb, "width=32&height=32"), &[])
            .await
            .assert_error(413, "M_TOO_LARGE")
            .assert_secure();
    }
    // Over the configured pixel limit (4 MP) is refused the same way.
    let big = upload(&alice, image_bytes(2100, 2000, ImageFormat::Jpeg), "image/jpeg", None).await;
    get(&alice, &thumbnail_path(&big, "width=32&height=32"), &[]).await.assert_error(413, "M_TOO_LARGE");

    // The server is fine, and the files can still be downloaded as they are.
    assert_ok(alice.whoami().await);
    assert_eq!(get(&alice, &download_path(&bomb), &[]).await.body, png_header_only(100_000, 100_000));
    let ok = upload(&alice, image_bytes(400, 300, ImageFormat::Png), "image/png", None).await;
    assert_eq!(dimensions(&thumb(&alice, &ok, "width=32&height=32&method=crop").await.body).1, 32);
}

#[tokio::test]
async fn animated_thumbnails() {
    let server = TestServer::builder().env("KITH_MEDIA__MAX_ANIMATED_ORIGINAL_BYTES", "20000").start().await;
    let alice = server.register("alice", "password-alice").await;

    // A small animation is its own animated thumbnail.
    let small_gif = animated_gif(120, 120, 3, false);
    assert!(small_gif.len() < 20000, "{}", small_gif.len());
    let small = upload(&alice, small_gif.clone(), "image/gif", None).await;
    let raw = thumb(&alice, &small, "width=32&height=32&method=crop&animated=true").await;
    assert_eq!(raw.body, small_gif);
    assert_eq!(raw.header("content-type"), "image/gif");

    // A larger one gets a smaller animated GIF with all its frames.
    let big_gif = animated_gif(300, 200, 4, true);
    assert!(big_gif.len() > 20000, "{}", big_gif.len());
    let big = upload(&alice, big_gif, "image/gif", None).await;
    let raw = thumb(&alice, &big, "width=96&height=96&method=crop&animated=true").await;
    assert_eq!(raw.header("content-type"), "image/gif");
    let frames: Vec<_> =
        image::AnimationDecoder::into_frames(GifDecoder::new(std::io::Cursor::new(&raw.body)).unwrap())
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(frames.len(), 4);
    assert!(frames.iter().all(|f| f.buffer().dimensions() == (96, 96)));

    // Without animated=true (or with false): a still image, never an animation.
    for query in ["width=96&height=96&method=crop", "width=96&height=96&method=crop&animated=false"] {
        for uri in [&small, &big] {
            let raw = thumb(&alice, uri, query).await;
            assert_ne!(raw.header("content-type"), "image/gif", "{query}");
            assert_eq!(dimensions(&raw.body).1, 96);
        }
    }

    // animated=true of a still image is a still thumbnail.
    let still = upload(&alice, image_bytes(500, 500, ImageFormat::Jpeg), "image/jpeg", None).await;
    let raw = thumb(&alice, &still, "width=96&height=96&method=crop&animated=true").await;
    assert_eq!(raw.header("content-type"), "image/jpeg");
    assert_eq!(dimensions(&raw.body).1, 96);
}
