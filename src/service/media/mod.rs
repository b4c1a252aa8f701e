//! The media repository: uploads (direct and asynchronous), downloads, thumbnails,
//! URL previews and deletion. Bytes go to a [`store::ContentStore`] by content
//! hash; metadata goes to the database; small hot files and thumbnail answers
//! are kept in memory.

pub mod preview;
pub mod ssrf;
pub mod store;
pub mod thumbnail;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use moka::future::Cache;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::storage::{MediaRecord, Storage, ThumbnailRecord, UploadedContent};
use store::{ByteStream, ContentStore, LocalContentStore};
use thumbnail::{Method, Probe, ThumbnailError};

/// How long an uploaded media's metadata is trusted from memory (a deletion by
/// the admin CLI, another process, shows within this time).
const RECORD_TTL: Duration = Duration::from_secs(10);
/// How long a thumbnail answer (or a refusal) is kept in memory.
const THUMBNAIL_TTL: Duration = Duration::from_secs(600);
/// How long a URL preview is reused.
const PREVIEW_TTL: Duration = Duration::from_secs(3600);

/// What a thumbnail request is answered with.
#[derive(Debug, Clone)]
pub enum ThumbnailAnswer {
    /// The original file (it is no larger than asked, or is a small animation),
    /// served as the image type its bytes are, whatever type it was uploaded as.
    Original {
        content_type: &'static str,
    },
    Stored(Arc<ThumbnailRecord>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ThumbnailKey {
    width: u32,
    height: u32,
    method: Method,
    animated: bool,
}

/// The bytes of a download.
pub enum Payload {
    Bytes(Bytes),
    Stream(ByteStream),
}

pub struct MediaService {
    config: Arc<Config>,
    storage: Arc<dyn Storage>,
    store: Arc<dyn ContentStore>,
    records: Cache<String, Arc<MediaRecord>>,
    /// Small files and thumbnails by content hash, bounded by size.
    bytes: Cache<String, Bytes>,
    thumbnails: Cache<(String, ThumbnailKey), Arc<Result<ThumbnailAnswer, ThumbnailError>>>,
    /// Decoding runs on blocking threads; this bounds how many images are in memory at once.
    decoders: Arc<Semaphore>,
    /// Woken when a pending upload completes.
    uploaded: Notify,
    fetcher: Option<preview::Fetcher>,
    previews: Cache<String, Arc<Value>>,
}

/// A new random media id: 24 URL-safe characters.
pub fn new_media_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..24).map(|_| rng.sample(rand::distributions::Alphanumeric) as char).collect()
}

fn not_found() -> Error {
    Error::not_found("Media not found")
}

fn cannot_thumbnail(e: &ThumbnailError) -> Error {
    match e {
        ThumbnailError::TooLarge => Error::too_large("The image is too large to thumbnail"),
        _ => Error::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", "Cannot generate thumbnails for the requested content"),
    }
}

impl MediaService {
    pub fn new(config: Arc<Config>, storage: Arc<dyn Storage>) -> Result<Self> {
        let store = LocalContentStore::open(config.data_dir.join("media")).map_err(Error::internal)?;
        Ok(Self::with_store(config, storage, Arc::new(store)))
    }

    pub fn with_store(config: Arc<Config>, storage: Arc<dyn Storage>, store: Arc<dyn ContentStore>) -> Self {
        let cores = crate::cores() as usize;
        let fetcher = config.media.url_preview.enabled.then(|| preview::Fetcher::new(&config.media.url_preview));
        Self {
            records: Cache::builder().max_capacity(100_000).time_to_live(RECORD_TTL).build(),
            bytes: Cache::builder()
                .max_capacity(config.media.memory_cache_bytes)
                .weigher(|_: &String, b: &Bytes| u32::try_from(b.len()).unwrap_or(u32::MAX))
                .build(),
            thumbnails: Cache::builder().max_capacity(100_000).time_to_live(THUMBNAIL_TTL).build(),
            decoders: Arc::new(Semaphore::new(cores)),
            uploaded: Notify::new(),
            fetcher,
            previews: Cache::builder().max_capacity(10_000).time_to_live(PREVIEW_TTL).build(),
            config,
            storage,
            store,
        }
    }

    fn mxc(&self, media_id: &str) -> String {
        format!("mxc://{}/{media_id}", self.config.server_name)
    }

    pub fn max_upload_bytes(&self) -> u64 {
        self.config.media.max_upload_bytes
    }

    /// Refuses an upload that would take the user over the quota.
    async fn check_quota(&self, user_id: &str, adding: u64) -> Result<()> {
        let quota = self.config.media.user_quota_bytes;
        if quota == 0 {
            return Ok(());
        }
        let used = self.storage.media_usage(user_id).await? as u64;
        if used.saturating_add(adding) > quota {
            return Err(Error::forbidden("The upload would exceed your media quota"));
        }
        Ok(())
    }

    /// Streams a request body into the content store, within the size limit.
    /// Returns the content hash and size.
    async fn receive<S, E>(&self, user_id: &str, mut body: S, content_length: Option<u64>) -> Result<(String, u64)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let max = self.max_upload_bytes();
        let too_large = || Error::too_large(format!("The file is larger than the limit of {max} bytes"));
        if content_length.is_some_and(|n| n > max) {
            return Err(too_large());
        }
        self.check_quota(user_id, content_length.unwrap_or(0)).await?;
        let mut writer = self.store.writer().await.map_err(Error::internal)?;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    writer.abort().await;
                    return Err(Error::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", format!("Upload interrupted: {e}")));
                }
            };
            if writer.written() + chunk.len() as u64 > max {
                writer.abort().await;
                return Err(too_large());
            }
            if let Err(e) = writer.write(chunk).await {
                writer.abort().await;
                return Err(Error::internal(e));
            }
        }
        let size = writer.written();
        let sha256 = writer.commit().await.map_err(Error::internal)?;
        if let Err(e) = self.check_quota(user_id, size).await {
            self.release_content(&[sha256]).await;
            return Err(e);
        }
        Ok((sha256, size))
    }

    /// `POST /upload`: stores the body under a new id; returns its mxc:// URI.
    pub async fn upload<S, E>(
        &self,
        user_id: &str,
        content_type: Option<&str>,
        filename: Option<&str>,
        body: S,
        content_length: Option<u64>,
    ) -> Result<String>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let (sha256, size) = self.receive(user_id, body, content_length).await?;
        let media_id = new_media_id();
        let content =
            UploadedContent { sha256: &sha256, size: size as i64, content_type, filename, now: super::now_ms() };
        self.storage.insert_media(&media_id, user_id, &content).await?;
        Ok(self.mxc(&media_id))
    }

    /// `POST /media/v1/create`: reserves an id; returns the URI and when it lapses.
    pub async fn create(&self, user_id: &str) -> Result<(String, i64)> {
        let now = super::now_ms();
        self.storage.delete_lapsed_pending_media(now).await?;
        let pending = self.storage.count_pending_media(user_id, now).await?;
        if pending >= i64::from(self.config.media.max_pending_uploads) {
            return Err(Error::limit_exceeded(60_000));
        }
        let media_id = new_media_id();
        let expires = now + (self.config.media.pending_upload_lifetime_secs * 1000) as i64;
        self.storage.create_pending_media(&media_id, user_id, now, expires).await?;
        Ok((self.mxc(&media_id), expires))
    }

    /// `PUT /upload/{serverName}/{mediaId}`: fills an id reserved by `create`.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_pending<S, E>(
        &self,
        user_id: &str,
        server_name: &str,
        media_id: &str,
        content_type: Option<&str>,
        filename: Option<&str>,
        body: S,
        content_length: Option<u64>,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        if server_name != self.config.server_name {
            return Err(not_found());
        }
        let record = self.storage.get_media(media_id).await?.ok_or_else(not_found)?;
        if record.user_id != user_id {
            return Err(Error::forbidden("This media id was created by another user"));
        }
        if record.uploaded_ts.is_some() {
            return Err(cannot_overwrite());
        }
        if record.expires_ts.is_some_and(|t| t <= super::now_ms()) {
            return Err(Error::not_found("This media id has expired"));
        }
        let (sha256, size) = self.receive(user_id, body, content_length).await?;
        let content =
            UploadedContent { sha256: &sha256, size: size as i64, content_type, filename, now: super::now_ms() };
        if !self.storage.complete_pending_media(media_id, &content).await? {
            self.release_content(&[sha256]).await;
            return Err(cannot_overwrite());
        }
        self.uploaded.notify_waiters();
        Ok(())
    }

    /// The uploaded media `server_name/media_id`, waiting up to `wait` for a
    /// pending upload. `legacy` applies the unauthenticated paths' cut-off.
    pub async fn get(
        &self,
        server_name: &str,
        media_id: &str,
        wait: Duration,
        legacy: bool,
    ) -> Result<Arc<MediaRecord>> {
        if server_name != self.config.server_name {
            // Media of other servers needs federation, which Kith does not have yet.
            return Err(not_found());
        }
        let record = self.uploaded_record(media_id, wait).await?;
        if legacy && record.uploaded_ts.is_none_or(|t| t >= self.config.media.legacy_download_before_ts) {
            return Err(Error::not_found("This media is only available through the authenticated media endpoints"));
        }
        Ok(record)
    }

    async fn uploaded_record(&self, media_id: &str, wait: Duration) -> Result<Arc<MediaRecord>> {
        if let Some(record) = self.records.get(media_id).await {
            return Ok(record);
        }
        let wait = wait.min(Duration::from_millis(self.config.media.max_download_wait_ms));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.uploaded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let record = self.storage.get_media(media_id).await?.ok_or_else(not_found)?;
            if record.uploaded_ts.is_some() && record.sha256.is_some() {
                let record = Arc::new(record);
                self.records.insert(media_id.to_owned(), record.clone()).await;
                return Ok(record);
            }
            if record.expires_ts.is_some_and(|t| t <= super::now_ms()) {
                return Err(not_found());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "M_NOT_YET_UPLOADED",
                    "Content has not yet been uploaded",
                ));
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Bytes `start..=end` of the content (the whole of it when `range` is `None`).
    /// Small files come from (and go to) the memory cache; large ones stream from the store.
    pub async fn read(&self, sha256: &str, size: u64, range: Option<(u64, u64)>) -> Result<Payload> {
        let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
        if size <= self.config.media.memory_cache_max_file_bytes {
            let bytes = self
                .bytes
                .try_get_with(sha256.to_owned(), async {
                    self.store.read(sha256).await.map_err(Error::internal)?.ok_or_else(not_found)
                })
                .await
                .map_err(|e| Error::new(e.status, e.errcode, e.message.clone()))?;
            if size == 0 || bytes.is_empty() {
                return Ok(Payload::Bytes(Bytes::new()));
            }
            let end = end.min(bytes.len() as u64 - 1);
            return Ok(Payload::Bytes(bytes.slice(start as usize..=end as usize)));
        }
        let len = if size == 0 { 0 } else { end - start + 1 };
        match self.store.stream(sha256, start, len).await.map_err(Error::internal)? {
            Some(stream) => Ok(Payload::Stream(stream)),
            None => Err(not_found()),
        }
    }

    /// A thumbnail of `record` at least `width`×`height` (or the original, when
    /// it is no larger). `animated` asks for an animated thumbnail of an animated image.
    pub async fn thumbnail(
        &self,
        record: &MediaRecord,
        width: u32,
        height: u32,
        method: Method,
        animated: bool,
    ) -> Result<ThumbnailAnswer> {
        // Larger than any thumbnail size: the original (if it is an image at all).
        let (width, height) = thumbnail::choose_size(width, height, method).unwrap_or((u32::MAX, u32::MAX));
        let key = ThumbnailKey { width, height, method, animated };
        let answer = self
            .thumbnails
            .try_get_with((record.media_id.clone(), key), self.make_thumbnail(record, key))
            .await
            .map_err(|e| Error::new(e.status, e.errcode, e.message.clone()))?;
        match answer.as_ref() {
            Ok(answer) => Ok(answer.clone()),
            Err(e) => Err(cannot_thumbnail(e)),
        }
    }

    async fn make_thumbnail(
        &self,
        record: &MediaRecord,
        key: ThumbnailKey,
    ) -> Result<Arc<Result<ThumbnailAnswer, ThumbnailError>>> {
        let stored_key = |animated: bool| (i64::from(key.width), i64::from(key.height), key.method.as_str(), animated);
        let (w, h, m, a) = stored_key(key.animated);
        if key.width != u32::MAX
            && let Some(stored) = self.storage.get_thumbnail(&record.media_id, w, h, m, a).await?
        {
            return Ok(Arc::new(Ok(ThumbnailAnswer::Stored(Arc::new(stored)))));
        }
        let sha256 = record.sha256.clone().ok_or_else(not_found)?;
        let _permit = self.decoders.clone().acquire_owned().await.map_err(Error::internal)?;
        let bytes = self.store.read(&sha256).await.map_err(Error::internal)?.ok_or_else(not_found)?;
        let max_pixels = self.config.media.max_image_pixels;
        let max_animated_original = self.config.media.max_animated_original_bytes;
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        // Decodes once; answers the request, then makes the other recommended sizes.
        let job = tokio::task::spawn_blocking(move || -> Vec<(ThumbnailKey, thumbnail::Thumbnail)> {
            use First::{Made, Original};
            let probe = match thumbnail::probe(&bytes, max_pixels) {
                Ok(probe) => probe,
                Err(e) => {
                    let _ = first_tx.send(Err(e));
                    return Vec::new();
                }
            };
            let target = (key.width, key.height);
            if key.animated && probe.animated {
                let answer =
                    if bytes.len() as u64 <= max_animated_original || thumbnail::fits(&probe, target.0, target.1) {
                        Ok(Original(thumbnail::mime(probe.format)))
                    } else {
                        let key = ThumbnailKey { animated: true, ..key };
                        thumbnail::animated(&bytes, &probe, target, key.method).map(|t| Made(key, t))
                    };
                let _ = first_tx.send(answer);
                return Vec::new();
            }
            // A still thumbnail (of the first frame, for an animation).
            if thumbnail::fits(&probe, target.0, target.1) && !probe.animated {
                let _ = first_tx.send(Ok(Original(thumbnail::mime(probe.format))));
                return Vec::new();
            }
            let target = clamp_target(&probe, target);
            let image = match thumbnail::decode_for(&bytes, &probe, target) {
                Ok(image) => image,
                Err(e) => {
                    let _ = first_tx.send(Err(e));
                    return Vec::new();
                }
            };
            let still = ThumbnailKey { animated: false, ..key };
            let first = thumbnail::encode(&thumbnail::resize(&image, target, key.method));
            let _ = first_tx.send(first.map(|t| Made(still, t)));
            // The other sizes come from one intermediate at twice the largest size,
            // not from the full image each time (a JPEG is decoded again at that scale).
            let image = if probe.format == image::ImageFormat::Jpeg {
                match thumbnail::decode_for(&bytes, &probe, (1600, 1200)) {
                    Ok(image) => image,
                    Err(_) => return Vec::new(),
                }
            } else {
                image
            };
            drop(bytes);
            let base =
                (!thumbnail::fits(&probe, 1600, 1200)).then(|| thumbnail::resize(&image, (1600, 1200), Method::Scale));
            // An intermediate of an extreme aspect ratio may be too small for a crop.
            let source_for = |w: u32, h: u32| match &base {
                Some(base)
                    if base.width() >= (2 * w).min(probe.width) && base.height() >= (2 * h).min(probe.height) =>
                {
                    base
                }
                _ => &image,
            };
            thumbnail::SIZES
                .iter()
                .filter(|(w, h, m)| {
                    (*w, *h, *m) != (key.width, key.height, key.method) && !thumbnail::fits(&probe, *w, *h)
                })
                .filter_map(|&(w, h, m)| {
                    let thumb = thumbnail::encode(&thumbnail::resize(source_for(w, h), (w, h), m)).ok()?;
                    Some((ThumbnailKey { width: w, height: h, method: m, animated: false }, thumb))
                })
                .collect()
        });
        // A decoder that panicked on a hostile file counts as a file that cannot be thumbnailed.
        let first = first_rx.await.unwrap_or_else(|_| Err(ThumbnailError::Malformed("the decoder failed".into())));
        let answer = match first {
            Err(e) => Ok(Err(e)),
            Ok(First::Original(content_type)) => Ok(Ok(ThumbnailAnswer::Original { content_type })),
            Ok(First::Made(stored_as, thumb)) => {
                let stored = self.save_thumbnail(&record.media_id, stored_as, thumb).await?;
                Ok(Ok(ThumbnailAnswer::Stored(stored)))
            }
        };
        // The other sizes are stored in the background; the permit is held until then.
        let storage = self.storage.clone();
        let store = self.store.clone();
        let media_id = record.media_id.clone();
        tokio::spawn(async move {
            let _permit = _permit;
            if let Ok(rest) = job.await {
                for (key, thumb) in rest {
                    let (w, h, m) = (i64::from(key.width), i64::from(key.height), key.method.as_str());
                    if matches!(storage.get_thumbnail(&media_id, w, h, m, false).await, Ok(Some(_))) {
                        continue;
                    }
                    if let Err(e) = save_thumbnail(&*storage, &*store, &media_id, key, thumb).await {
                        tracing::warn!(error = %e, "could not store a thumbnail");
                    }
                }
            }
        });
        answer.map(Arc::new)
    }

    async fn save_thumbnail(
        &self,
        media_id: &str,
        key: ThumbnailKey,
        thumb: thumbnail::Thumbnail,
    ) -> Result<Arc<ThumbnailRecord>> {
        let bytes = Bytes::from(thumb.bytes.clone());
        let record = save_thumbnail(&*self.storage, &*self.store, media_id, key, thumb).await?;
        self.bytes.insert(record.sha256.clone(), bytes).await;
        Ok(Arc::new(record))
    }

    /// Deletes a media id, its thumbnails and the content nothing else holds.
    /// Returns whether the id existed.
    pub async fn delete(&self, media_id: &str) -> Result<bool> {
        let existed = self.storage.get_media(media_id).await?.is_some();
        let hashes = self.storage.delete_media(media_id).await?;
        self.records.invalidate(media_id).await;
        self.release_content(&hashes).await;
        Ok(existed)
    }

    /// Deletes every media of a user; returns how many.
    pub async fn delete_user_media(&self, user_id: &str) -> Result<usize> {
        let ids = self.storage.list_user_media(user_id).await?;
        for id in &ids {
            self.delete(id).await?;
        }
        Ok(ids.len())
    }

    /// Removes content that no media or thumbnail holds any more.
    async fn release_content(&self, hashes: &[String]) {
        for sha256 in hashes {
            match self.storage.content_referenced(sha256).await {
                Ok(false) => {
                    self.bytes.invalidate(sha256).await;
                    if let Err(e) = self.store.delete(sha256).await {
                        tracing::warn!(error = %e, sha256, "could not delete media content");
                    }
                }
                Ok(true) => {}
                Err(e) => tracing::warn!(error = %e, sha256, "could not check whether media content is in use"),
            }
        }
    }

    /// `GET /preview_url`: the OpenGraph data of a page, its image stored as media.
    pub async fn preview(&self, user_id: &str, url: &str) -> Result<Arc<Value>> {
        let Some(fetcher) = &self.fetcher else {
            return Err(Error::forbidden("URL previews are disabled on this server"));
        };
        let parsed = reqwest::Url::parse(url).map_err(|_| Error::invalid_param("url: not a valid URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid_param("url: only http and https URLs can be previewed"));
        }
        if let Some(cached) = self.previews.get(url).await {
            return Ok(cached);
        }
        let (page, complete) = fetcher.fetch(url).await.map_err(fetch_error)?;
        let content_type = page.content_type.clone().unwrap_or_default();
        let mut og = serde_json::Map::new();
        if content_type.starts_with("image/") {
            if complete {
                self.preview_image(user_id, &page, &mut og).await?;
            }
        } else if content_type.starts_with("text/html") || content_type.starts_with("application/xhtml") {
            og = preview::opengraph(&String::from_utf8_lossy(&page.bytes));
            if let Some(image_url) = og.remove("og:image").and_then(|v| v.as_str().map(str::to_owned))
                && let Ok(image_url) = page.url.join(&image_url)
                && let Ok((image, true)) = fetcher.fetch(image_url.as_str()).await
                && image.content_type.as_deref().is_some_and(|t| t.starts_with("image/"))
            {
                self.preview_image(user_id, &image, &mut og).await?;
            }
        }
        let value = Arc::new(Value::Object(og));
        self.previews.insert(url.to_owned(), value.clone()).await;
        Ok(value)
    }

    async fn preview_image(
        &self,
        user_id: &str,
        image: &preview::Fetched,
        og: &mut serde_json::Map<String, Value>,
    ) -> Result<()> {
        let probe: Option<Probe> = {
            let bytes = image.bytes.clone();
            let max = self.config.media.max_image_pixels;
            tokio::task::spawn_blocking(move || thumbnail::probe(&bytes, max).ok()).await.ok().flatten()
        };
        let Some(probe) = probe else { return Ok(()) };
        let sha256 = store::put_bytes(&*self.store, image.bytes.clone()).await.map_err(Error::internal)?;
        let media_id = new_media_id();
        let content_type = image.content_type.as_deref().map(|t| t.split(';').next().unwrap_or(t).trim().to_owned());
        let content = UploadedContent {
            sha256: &sha256,
            size: image.bytes.len() as i64,
            content_type: content_type.as_deref(),
            filename: None,
            now: super::now_ms(),
        };
        self.storage.insert_media(&media_id, user_id, &content).await?;
        og.insert("og:image".into(), json!(self.mxc(&media_id)));
        og.insert("matrix:image:size".into(), json!(image.bytes.len()));
        og.insert("og:image:width".into(), json!(probe.width));
        og.insert("og:image:height".into(), json!(probe.height));
        if let Some(t) = content_type {
            og.insert("og:image:type".into(), json!(t));
        }
        Ok(())
    }
}

/// The first result of a thumbnail job.
enum First {
    Original(&'static str),
    Made(ThumbnailKey, thumbnail::Thumbnail),
}

fn cannot_overwrite() -> Error {
    Error::new(StatusCode::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded to this id")
}

fn fetch_error(e: preview::FetchError) -> Error {
    match e {
        preview::FetchError::Forbidden(message) => Error::forbidden(format!("Cannot preview this URL: {message}")),
        preview::FetchError::Failed(message) => {
            Error::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("Cannot preview this URL: {message}"))
        }
    }
}

/// "Larger than any thumbnail" requests (`u32::MAX`) never get here unscaled:
/// they are answered with the original; this keeps the arithmetic in range.
fn clamp_target(probe: &Probe, target: (u32, u32)) -> (u32, u32) {
    (target.0.min(probe.width), target.1.min(probe.height))
}

async fn save_thumbnail(
    storage: &dyn Storage,
    store: &dyn ContentStore,
    media_id: &str,
    key: ThumbnailKey,
    thumb: thumbnail::Thumbnail,
) -> Result<ThumbnailRecord> {
    let size = thumb.bytes.len() as i64;
    let sha256 = store::put_bytes(store, Bytes::from(thumb.bytes)).await.map_err(Error::internal)?;
    let record = ThumbnailRecord {
        media_id: media_id.to_owned(),
        width: i64::from(key.width),
        height: i64::from(key.height),
        method: key.method.as_str().to_owned(),
        animated: key.animated,
        sha256,
        size,
        content_type: thumb.content_type.to_owned(),
    };
    storage.put_thumbnail(&record).await?;
    Ok(record)
}
