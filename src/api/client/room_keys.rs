//! Server-side key backup: `/room_keys/version` and `/room_keys/keys`.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json, Query};
use crate::error::Result;
use crate::service::e2ee::{BackupKeys, KeyBackupData};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/room_keys/version", post(create_version).get(current_version))
        .route(
            "/_matrix/client/v3/room_keys/version/{version}",
            get(get_version).put(update_version).delete(delete_version),
        )
        .route("/_matrix/client/v3/room_keys/keys", get(get_all).put(put_all).delete(delete_all))
        .route("/_matrix/client/v3/room_keys/keys/{room_id}", get(get_room).put(put_room).delete(delete_room))
        .route(
            "/_matrix/client/v3/room_keys/keys/{room_id}/{session_id}",
            get(get_session).put(put_session).delete(delete_session),
        )
}

#[derive(Deserialize)]
struct VersionBody {
    algorithm: String,
    auth_data: Value,
    version: Option<String>,
}

async fn create_version(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<VersionBody>,
) -> Result<axum::Json<Value>> {
    let backup = state.services.e2ee.backup();
    Ok(axum::Json(backup.create_version(&auth.requester.user_id, &body.algorithm, &body.auth_data).await?))
}

async fn current_version(State(state): State<AppState>, auth: Auth) -> Result<axum::Json<Value>> {
    Ok(axum::Json(state.services.e2ee.backup().get_version(&auth.requester.user_id, None).await?))
}

async fn get_version(
    State(state): State<AppState>,
    auth: Auth,
    Path(version): Path<String>,
) -> Result<axum::Json<Value>> {
    Ok(axum::Json(state.services.e2ee.backup().get_version(&auth.requester.user_id, Some(&version)).await?))
}

async fn update_version(
    State(state): State<AppState>,
    auth: Auth,
    Path(version): Path<String>,
    Json(body): Json<VersionBody>,
) -> Result<axum::Json<Value>> {
    let backup = state.services.e2ee.backup();
    backup
        .update_version(&auth.requester.user_id, &version, &body.algorithm, &body.auth_data, body.version.as_deref())
        .await?;
    Ok(axum::Json(json!({})))
}

async fn delete_version(
    State(state): State<AppState>,
    auth: Auth,
    Path(version): Path<String>,
) -> Result<axum::Json<Value>> {
    state.services.e2ee.backup().delete_version(&auth.requester.user_id, &version).await?;
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
struct VersionQuery {
    version: String,
}

#[derive(Deserialize)]
struct RoomKeys {
    sessions: std::collections::BTreeMap<String, KeyBackupData>,
}

#[derive(Deserialize)]
struct AllKeys {
    rooms: std::collections::BTreeMap<String, RoomKeys>,
}

async fn put_all(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<VersionQuery>,
    Json(body): Json<AllKeys>,
) -> Result<axum::Json<Value>> {
    let keys: BackupKeys = body.rooms.into_iter().map(|(room, keys)| (room, keys.sessions)).collect();
    Ok(axum::Json(state.services.e2ee.backup().put_keys(&auth.requester.user_id, &query.version, keys).await?))
}

async fn put_room(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
    Json(body): Json<RoomKeys>,
) -> Result<axum::Json<Value>> {
    let keys: BackupKeys = [(room_id, body.sessions)].into_iter().collect();
    Ok(axum::Json(state.services.e2ee.backup().put_keys(&auth.requester.user_id, &query.version, keys).await?))
}

async fn put_session(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
    Json(body): Json<KeyBackupData>,
) -> Result<axum::Json<Value>> {
    let keys: BackupKeys = [(room_id, [(session_id, body)].into_iter().collect())].into_iter().collect();
    Ok(axum::Json(state.services.e2ee.backup().put_keys(&auth.requester.user_id, &query.version, keys).await?))
}

async fn get_all(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<VersionQuery>,
) -> Result<axum::Json<Value>> {
    let backup = state.services.e2ee.backup();
    Ok(axum::Json(backup.get_keys(&auth.requester.user_id, &query.version, None, None).await?))
}

async fn get_room(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<axum::Json<Value>> {
    let backup = state.services.e2ee.backup();
    Ok(axum::Json(backup.get_keys(&auth.requester.user_id, &query.version, Some(&room_id), None).await?))
}

async fn get_session(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
) -> Result<axum::Json<Value>> {
    let backup = state.services.e2ee.backup();
    Ok(axum::Json(backup.get_keys(&auth.requester.user_id, &query.version, Some(&room_id), Some(&session_id)).await?))
}

async fn delete_all(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<VersionQuery>,
) -> Result<axum::Json<Value>> {
    let backup = state.services.e2ee.backup();
    Ok(axum::Json(backup.delete_keys(&auth.requester.user_id, &query.version, None, None).await?))
}

async fn delete_room(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<axum::Json<Value>> {
    let backup = state.services.e2ee.backup();
    Ok(axum::Json(backup.delete_keys(&auth.requester.user_id, &query.version, Some(&room_id), None).await?))
}

async fn delete_session(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
) -> Result<axum::Json<Value>> {
    let backup = state.services.e2ee.backup();
    Ok(axum::Json(
        backup.delete_keys(&auth.requester.user_id, &query.version, Some(&room_id), Some(&session_id)).await?,
    ))
}
