//! The media scenarios:
//!
//! - `media-download`: GET of one 100 KB image (cached by the server after the
//!   first request) by every worker;
//! - `media-large`: GET of one large file (`--file-mb`, 100) streamed from disk; the
//!   notes give the throughput in MB/s;
//! - `media-thumbnail`: setup uploads `--images` (5) distinct 12-megapixel JPEGs and
//!   times the first 320×240 thumbnail of each (the notes); the measured requests
//!   repeat those thumbnails;
//! - `media-upload`: POST of a `--file-mb` (500) MB body generated on the fly; with
//!   `--server-pid`, the server's resident memory is sampled during the upload and
//!   the notes give its growth.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

use super::report::ProcessSample;
use super::{Ctx, Scenario, Session, mix64};

/// Bytes from a SplitMix64 sequence.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed;
    while out.len() < len {
        x = mix64(x);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A photo-like image: a gradient with noise (so it compresses like a photo).
fn photo(width: u32, height: u32, seed: u64, format: ImageFormat) -> Result<Vec<u8>, String> {
    let grain = noise((width * height) as usize, seed);
    let image = RgbImage::from_fn(width, height, |x, y| {
        let n = grain[(y * width + x) as usize] / 4;
        // Wrapping: the gradient plus grain may pass 255 (debug builds check overflow).
        Rgb([
            ((x * 200 / width) as u8).wrapping_add(n),
            ((y * 200 / height) as u8).wrapping_add(n),
            (((x + y) % 256) as u8 / 2).wrapping_add(n),
        ])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(image).write_to(&mut out, format).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// POSTs `body` of `length` bytes. The length is sent even for a streamed body:
/// Synapse refuses an upload without Content-Length (400 M_UNKNOWN).
async fn upload(
    ctx: &Ctx,
    token: &str,
    content_type: &str,
    length: u64,
    body: reqwest::Body,
) -> Result<String, String> {
    let resp = ctx
        .http
        .post(ctx.url("/_matrix/media/v3/upload"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header(reqwest::header::CONTENT_LENGTH, length)
        .timeout(Duration::from_secs(3600))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("upload: {e}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| format!("upload: {e}"))?;
    match body["content_uri"].as_str() {
        Some(uri) if status.is_success() => Ok(uri.trim_start_matches("mxc://").to_owned()),
        _ => Err(format!("upload: {status} {body}")),
    }
}

/// GETs `path` and counts the body's bytes without keeping them.
async fn fetch_len(ctx: &Ctx, token: &str, path: &str) -> Result<u64, String> {
    let resp = ctx
        .http
        .get(ctx.url(path))
        .bearer_auth(token)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{path}: {}", resp.status()));
    }
    let mut stream = resp.bytes_stream();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        len += chunk.map_err(|e| format!("{path}: {e}"))?.len() as u64;
    }
    Ok(len)
}

/// A download of one file by every worker; checks the length.
struct Download {
    user: Session,
    path: String,
    size: u64,
    bytes: AtomicU64,
    /// When the first measured request started.
    started: std::sync::OnceLock<Instant>,
}

impl Scenario for Download {
    fn request<'a>(&'a self, ctx: &'a Ctx, _worker: usize, _seq: u64) -> BoxFuture<'a, Result<(), String>> {
        async move {
            self.started.get_or_init(Instant::now);
            let len = fetch_len(ctx, &self.user.access_token, &self.path).await?;
            if len != self.size {
                return Err(format!("got {len} bytes of {}", self.size));
            }
            self.bytes.fetch_add(len, Ordering::Relaxed);
            Ok(())
        }
        .boxed()
    }

    fn notes(&self) -> Vec<String> {
        let bytes = self.bytes.load(Ordering::Relaxed) as f64;
        let secs = self.started.get().map_or(1.0, |t| t.elapsed().as_secs_f64());
        vec![format!("downloaded {:.1} MB of a {} byte file: {:.0} MB/s", bytes / 1e6, self.size, bytes / 1e6 / secs)]
    }
}

async fn prepare_download(ctx: &Ctx, body: Vec<u8>, content_type: &str) -> Result<Arc<dyn Scenario>, String> {
    let user = ctx.register(&format!("{}_media", ctx.run_id), "pw-media-load").await?;
    let size = body.len() as u64;
    let mxc = upload(ctx, &user.access_token, content_type, size, body.into()).await?;
    let path = format!("/_matrix/client/v1/media/download/{mxc}");
    // One download before the measured phase: the server's memory cache is warm.
    fetch_len(ctx, &user.access_token, &path).await?;
    Ok(Arc::new(Download { user, path, size, bytes: AtomicU64::new(0), started: Default::default() }))
}

pub fn prepare_small(ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async move {
        // About 100 KB: a 185×180 photo-like PNG.
        let image = photo(185, 180, 1, ImageFormat::Png)?;
        eprintln!("  uploading a {} byte PNG", image.len());
        prepare_download(ctx, image, "image/png").await
    }
    .boxed()
}

pub fn prepare_large(ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async move {
        let size = ctx.opts.file_mb.unwrap_or(100) * 1_000_000;
        eprintln!("  uploading a {size} byte file");
        prepare_download(ctx, noise(size as usize, 2), "video/mp4").await
    }
    .boxed()
}

/// Repeated requests of thumbnails made during setup.
struct Thumbnails {
    user: Session,
    paths: Vec<String>,
    first_ms: Vec<f64>,
}

pub fn prepare_thumbnail(ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async move {
        let user = ctx.register(&format!("{}_thumbs", ctx.run_id), "pw-media-load").await?;
        let mut paths = Vec::new();
        let mut first_ms = Vec::new();
        for i in 0..ctx.opts.images {
            let jpeg = photo(4000, 3000, 100 + i as u64, ImageFormat::Jpeg)?;
            let mxc = upload(ctx, &user.access_token, "image/jpeg", jpeg.len() as u64, jpeg.clone().into()).await?;
            let path = format!("/_matrix/client/v1/media/thumbnail/{mxc}?width=320&height=240&method=scale");
            let t = Instant::now();
            let len = fetch_len(ctx, &user.access_token, &path).await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            eprintln!(
                "  image {i}: {} byte 12 MP JPEG, first 320x240 thumbnail ({len} bytes) in {ms:.1} ms",
                jpeg.len()
            );
            first_ms.push(ms);
            paths.push(path);
            // Let the other recommended sizes finish in the background before the next image.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(Arc::new(Thumbnails { user, paths, first_ms }) as Arc<dyn Scenario>)
    }
    .boxed()
}

impl Scenario for Thumbnails {
    fn request<'a>(&'a self, ctx: &'a Ctx, worker: usize, seq: u64) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let path = &self.paths[(worker + seq as usize) % self.paths.len()];
            fetch_len(ctx, &self.user.access_token, path).await.map(|_| ())
        }
        .boxed()
    }

    fn notes(&self) -> Vec<String> {
        let mut sorted = self.first_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let list = sorted.iter().map(|ms| format!("{ms:.1}")).collect::<Vec<_>>().join(", ");
        vec![
            format!("first 320x240 thumbnail of a 12 MP JPEG, ms: {list}"),
            format!("first thumbnail median: {:.1} ms", sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)),
        ]
    }
}

/// One large upload per request, with the server's memory sampled meanwhile.
struct Upload {
    user: Session,
    size: u64,
    server_pid: Option<u32>,
    rss_before_kib: AtomicU64,
    rss_peak_kib: AtomicU64,
    done: AtomicU64,
}

pub fn prepare_upload(ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async move {
        let user = ctx.register(&format!("{}_upload", ctx.run_id), "pw-media-load").await?;
        let size = ctx.opts.file_mb.unwrap_or(500) * 1_000_000;
        if ctx.server_pid.is_none() {
            eprintln!("  (no --server-pid: the server's memory is not measured)");
        }
        Ok(Arc::new(Upload {
            user,
            size,
            server_pid: ctx.server_pid,
            rss_before_kib: AtomicU64::new(0),
            rss_peak_kib: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }) as Arc<dyn Scenario>)
    }
    .boxed()
}

fn rss_kib(pid: Option<u32>) -> Option<u64> {
    pid.and_then(ProcessSample::read).and_then(|s| s.rss_kib)
}

impl Scenario for Upload {
    fn request<'a>(&'a self, ctx: &'a Ctx, _worker: usize, seq: u64) -> BoxFuture<'a, Result<(), String>> {
        async move {
            if let Some(before) = rss_kib(self.server_pid) {
                let _ = self.rss_before_kib.compare_exchange(0, before, Ordering::Relaxed, Ordering::Relaxed);
            }
            let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
            let sampler = {
                let sampling = sampling.clone();
                let pid = self.server_pid;
                tokio::spawn(async move {
                    let mut peak = 0;
                    while sampling.load(Ordering::Relaxed) {
                        peak = peak.max(rss_kib(pid).unwrap_or(0));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    peak
                })
            };
            // 1 MB chunks generated as the upload goes: the client holds little of it.
            let chunk = 1_000_000u64;
            let chunks = self.size.div_ceil(chunk);
            let size = self.size;
            let seed = seq;
            let body = futures::stream::iter(0..chunks).map(move |i| {
                let len = chunk.min(size - i * chunk) as usize;
                Ok::<_, std::io::Error>(noise(len, mix64(seed ^ i)))
            });
            let body = reqwest::Body::wrap_stream(body);
            let result = upload(ctx, &self.user.access_token, "video/mp4", size, body).await;
            sampling.store(false, Ordering::Relaxed);
            let peak = sampler.await.unwrap_or(0);
            self.rss_peak_kib.fetch_max(peak, Ordering::Relaxed);
            result?;
            self.done.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        .boxed()
    }

    fn max_requests(&self) -> Option<u64> {
        Some(1)
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!("uploaded {} file(s) of {} bytes", self.done.load(Ordering::Relaxed), self.size)];
        let (before, peak) = (self.rss_before_kib.load(Ordering::Relaxed), self.rss_peak_kib.load(Ordering::Relaxed));
        if before > 0 && peak > 0 {
            notes.push(format!(
                "server rss before {before} KiB, peak during the upload {peak} KiB: growth {:.1} MiB",
                (peak.saturating_sub(before)) as f64 / 1024.0
            ));
        }
        notes
    }
}
