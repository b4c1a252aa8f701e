//! End-to-end encryption keys: upload, query, claim, changes, cross-signing.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json, Query};
use crate::error::Result;
use crate::service::e2ee::{KeysQueryResponse, UploadRequest};
use crate::service::sync::SyncToken;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/keys/upload", post(upload))
        .route("/_matrix/client/v3/keys/query", post(query))
        .route("/_matrix/client/v3/keys/claim", post(claim))
        .route("/_matrix/client/v3/keys/changes", get(changes))
        .route("/_matrix/client/v3/keys/device_signing/upload", post(device_signing_upload))
        .route("/_matrix/client/v3/keys/signatures/upload", post(signatures_upload))
}

#[derive(Deserialize)]
struct UploadBody {
    device_keys: Option<Value>,
    one_time_keys: Option<Map<String, Value>>,
    fallback_keys: Option<Map<String, Value>>,
}

async fn upload(State(state): State<AppState>, auth: Auth, Json(body): Json<UploadBody>) -> Result<axum::Json<Value>> {
    let request = UploadRequest {
        device_keys: body.device_keys,
        one_time_keys: body.one_time_keys,
        fallback_keys: body.fallback_keys,
    };
    Ok(axum::Json(state.services.e2ee.upload_keys(&auth.requester, request).await?))
}

#[derive(Deserialize)]
struct QueryBody {
    device_keys: HashMap<String, Vec<String>>,
    #[allow(dead_code)]
    timeout: Option<u64>,
}

async fn query(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<QueryBody>,
) -> Result<axum::Json<KeysQueryResponse>> {
    Ok(axum::Json(state.services.e2ee.query_keys(&auth.requester, &body.device_keys).await?))
}

#[derive(Deserialize)]
struct ClaimBody {
    one_time_keys: HashMap<String, HashMap<String, String>>,
    #[allow(dead_code)]
    timeout: Option<u64>,
}

async fn claim(State(state): State<AppState>, _auth: Auth, Json(body): Json<ClaimBody>) -> Result<axum::Json<Value>> {
    Ok(axum::Json(state.services.e2ee.claim_keys(&body.one_time_keys).await?))
}

#[derive(Deserialize)]
struct ChangesQuery {
    from: String,
    to: String,
}

async fn changes(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ChangesQuery>,
) -> Result<axum::Json<Value>> {
    let from = SyncToken::parse(&query.from)?;
    let to = SyncToken::parse(&query.to)?;
    let delta = state
        .services
        .e2ee
        // The stream keeps each user's latest change only: a change before `to`
        // followed by a later one is found by looking past `to` (over-reporting
        // is harmless; the spec calls `to` a hint).
        .device_list_delta(&auth.requester.user_id, (from.device_lists, i64::MAX), (from.events, to.events))
        .await?;
    Ok(axum::Json(json!({ "changed": delta.changed, "left": delta.left })))
}

#[derive(Deserialize)]
struct DeviceSigningBody {
    master_key: Option<Value>,
    self_signing_key: Option<Value>,
    user_signing_key: Option<Value>,
    auth: Option<Value>,
}

async fn device_signing_upload(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<DeviceSigningBody>,
) -> Result<axum::Json<Value>> {
    let e2ee = &state.services.e2ee;
    let user_id = &auth.requester.user_id;
    let keys: HashMap<String, Value> =
        [("master", body.master_key), ("self_signing", body.self_signing_key), ("user_signing", body.user_signing_key)]
            .into_iter()
            .filter_map(|(kind, key)| key.map(|k| (kind.to_owned(), k)))
            .collect();
    if e2ee.cross_signing_upload_needs_auth(user_id, &keys).await? {
        super::account::require_password(&state, &auth.requester, body.auth.as_ref()).await?;
    }
    e2ee.upload_cross_signing_keys(user_id, &keys).await?;
    Ok(axum::Json(json!({})))
}

async fn signatures_upload(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<Map<String, Value>>,
) -> Result<axum::Json<Value>> {
    Ok(axum::Json(state.services.e2ee.upload_signatures(&auth.requester.user_id, &body).await?))
}
