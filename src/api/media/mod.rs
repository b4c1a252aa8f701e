//! The media repository API: uploads under `/_matrix/media`, authenticated
//! downloads, thumbnails, previews and config under `/_matrix/client/v1/media`,
//! and the deprecated unauthenticated `/_matrix/media/v3` downloads.
//! Every response here carries the security headers of `response.rs`.

mod response;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::extract::{Auth, Query};
use crate::error::{Error, Result};
use crate::service::media::thumbnail::Method;
use crate::service::media::{Payload, ThumbnailAnswer};
use crate::storage::MediaRecord;
use response::{Range, content_disposition, inline_safe, parse_range};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/media/v3/upload", post(upload))
        .route("/_matrix/media/v1/create", post(create))
        .route("/_matrix/media/v3/upload/{server_name}/{media_id}", put(upload_pending))
        .route("/_matrix/client/v1/media/config", get(config))
        .route("/_matrix/media/v3/config", get(config))
        .route("/_matrix/client/v1/media/download/{server_name}/{media_id}", get(download))
        .route("/_matrix/client/v1/media/download/{server_name}/{media_id}/{file_name}", get(download_named))
        .route("/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}", get(thumbnail))
        .route("/_matrix/media/v3/download/{server_name}/{media_id}", get(legacy_download))
        .route("/_matrix/media/v3/download/{server_name}/{media_id}/{file_name}", get(legacy_download_named))
        .route("/_matrix/media/v3/thumbnail/{server_name}/{media_id}", get(legacy_thumbnail))
        .route("/_matrix/client/v1/media/preview_url", get(preview_url))
        .route("/_matrix/media/v3/preview_url", get(preview_url))
        .layer(axum::middleware::map_response(response::security_headers))
}

#[derive(Deserialize)]
struct UploadQuery {
    filename: Option<String>,
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned).filter(|t| !t.is_empty())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

async fn upload(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let uri = state
        .services
        .media
        .upload(
            &auth.requester.user_id,
            content_type(&headers).as_deref(),
            query.filename.as_deref(),
            body.into_data_stream(),
            content_length(&headers),
        )
        .await;
    upload_response(uri.map(|uri| json!({ "content_uri": uri })))
}

/// An upload refused before its body was read leaves the connection unusable:
/// say so, so that the client does not send its next request on it.
fn upload_response(result: Result<serde_json::Value>) -> Response {
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => {
            let mut response = error.into_response();
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

async fn create(State(state): State<AppState>, auth: Auth) -> Result<Response> {
    let (uri, expires) = state.services.media.create(&auth.requester.user_id).await?;
    Ok(axum::Json(json!({ "content_uri": uri, "unused_expires_at": expires })).into_response())
}

async fn upload_pending(
    State(state): State<AppState>,
    auth: Auth,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = state
        .services
        .media
        .upload_pending(
            &auth.requester.user_id,
            &server_name,
            &media_id,
            content_type(&headers).as_deref(),
            query.filename.as_deref(),
            body.into_data_stream(),
            content_length(&headers),
        )
        .await;
    upload_response(result.map(|()| json!({})))
}

async fn config(State(state): State<AppState>, _auth: Auth) -> Response {
    axum::Json(json!({ "m.upload.size": state.services.media.max_upload_bytes() })).into_response()
}

#[derive(Deserialize)]
struct DownloadQuery {
    timeout_ms: Option<u64>,
    /// Kith never redirects, so both values are served the same way.
    #[allow(dead_code)]
    allow_redirect: Option<bool>,
    /// Kith serves only its own media (no federation yet).
    #[allow(dead_code)]
    allow_remote: Option<bool>,
}

const DEFAULT_TIMEOUT_MS: u64 = 20_000;

fn wait(timeout_ms: Option<u64>) -> Duration {
    Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS))
}

async fn download(
    State(state): State<AppState>,
    _auth: Auth,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    serve_download(&state, &server_name, &media_id, None, query, &headers, false).await
}

async fn download_named(
    State(state): State<AppState>,
    _auth: Auth,
    Path((server_name, media_id, file_name)): Path<(String, String, String)>,
    Query(query): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    serve_download(&state, &server_name, &media_id, Some(file_name), query, &headers, false).await
}

async fn legacy_download(
    State(state): State<AppState>,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    serve_download(&state, &server_name, &media_id, None, query, &headers, true).await
}

async fn legacy_download_named(
    State(state): State<AppState>,
    Path((server_name, media_id, file_name)): Path<(String, String, String)>,
    Query(query): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    serve_download(&state, &server_name, &media_id, Some(file_name), query, &headers, true).await
}

async fn serve_download(
    state: &AppState,
    server_name: &str,
    media_id: &str,
    file_name: Option<String>,
    query: DownloadQuery,
    headers: &HeaderMap,
    legacy: bool,
) -> Result<Response> {
    let media = &state.services.media;
    let record = media.get(server_name, media_id, wait(query.timeout_ms), legacy).await?;
    let sha256 = record.sha256.as_deref().unwrap_or_default();
    let size = record.size.unwrap_or(0) as u64;
    let content_type = record.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
    let filename = file_name.or_else(|| record.filename.clone());
    let disposition = content_disposition(inline_safe(&content_type), filename.as_deref());
    serve(state, sha256, size, &content_type, disposition, headers).await
}

#[derive(Deserialize)]
struct ThumbnailQuery {
    width: u32,
    height: u32,
    method: Option<MethodParam>,
    animated: Option<bool>,
    timeout_ms: Option<u64>,
    #[allow(dead_code)]
    allow_redirect: Option<bool>,
    #[allow(dead_code)]
    allow_remote: Option<bool>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum MethodParam {
    Scale,
    Crop,
}

async fn thumbnail(
    State(state): State<AppState>,
    _auth: Auth,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(query): Query<ThumbnailQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    serve_thumbnail(&state, &server_name, &media_id, query, &headers, false).await
}

async fn legacy_thumbnail(
    State(state): State<AppState>,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(query): Query<ThumbnailQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    serve_thumbnail(&state, &server_name, &media_id, query, &headers, true).await
}

async fn serve_thumbnail(
    state: &AppState,
    server_name: &str,
    media_id: &str,
    query: ThumbnailQuery,
    headers: &HeaderMap,
    legacy: bool,
) -> Result<Response> {
    if query.width == 0 || query.height == 0 {
        return Err(Error::invalid_param("width and height must be positive"));
    }
    let method = match query.method.unwrap_or(MethodParam::Scale) {
        MethodParam::Scale => Method::Scale,
        MethodParam::Crop => Method::Crop,
    };
    let media = &state.services.media;
    let record = media.get(server_name, media_id, wait(query.timeout_ms), legacy).await?;
    let answer = media.thumbnail(&record, query.width, query.height, method, query.animated.unwrap_or(false)).await?;
    let (sha256, size, content_type) = match &answer {
        ThumbnailAnswer::Original { content_type } => original(&record, content_type),
        ThumbnailAnswer::Stored(t) => (t.sha256.clone(), t.size as u64, t.content_type.clone()),
    };
    let extension = content_type.rsplit('/').next().unwrap_or("png");
    let disposition = content_disposition(true, Some(&format!("thumbnail.{extension}")));
    serve(state, &sha256, size, &content_type, disposition, headers).await
}

fn original(record: &MediaRecord, content_type: &str) -> (String, u64, String) {
    (record.sha256.clone().unwrap_or_default(), record.size.unwrap_or(0) as u64, content_type.to_owned())
}

/// Answers with the content (or the range of it the request asks for).
async fn serve(
    state: &AppState,
    sha256: &str,
    size: u64,
    content_type: &str,
    disposition: HeaderValue,
    headers: &HeaderMap,
) -> Result<Response> {
    let etag = format!("\"{sha256}\"");
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, "private, max-age=31536000, immutable")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
        );
    if response::not_modified(headers, &etag) {
        return response.status(StatusCode::NOT_MODIFIED).body(Body::empty()).map_err(Error::internal);
    }
    let requested = if response::if_range_matches(headers, &etag) {
        parse_range(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), size)
    } else {
        Range::Full
    };
    let range = match requested {
        Range::Full => None,
        Range::Part(start, end) => Some((start, end)),
        Range::Unsatisfiable => {
            let error = Error::new(StatusCode::RANGE_NOT_SATISFIABLE, "M_UNKNOWN", "Range not satisfiable");
            let mut response = error.into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).map_err(Error::internal)?,
            );
            return Ok(response);
        }
    };
    let payload = state.services.media.read(sha256, size, range).await?;
    let length = match range {
        Some((start, end)) => {
            response = response
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            end - start + 1
        }
        None => size,
    };
    let body = match payload {
        Payload::Bytes(bytes) => Body::from(bytes),
        Payload::Stream(stream) => Body::from_stream(stream),
    };
    response.header(header::CONTENT_LENGTH, length).body(body).map_err(Error::internal)
}

#[derive(Deserialize)]
struct PreviewQuery {
    url: String,
    #[allow(dead_code)]
    ts: Option<i64>,
}

async fn preview_url(State(state): State<AppState>, auth: Auth, Query(query): Query<PreviewQuery>) -> Result<Response> {
    let preview = state.services.media.preview(&auth.requester.user_id, &query.url).await?;
    Ok(axum::Json(preview.as_ref().clone()).into_response())
}
