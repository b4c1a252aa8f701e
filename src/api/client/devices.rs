//! Device management.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json};
use crate::error::{Error, Result};
use crate::storage::DeviceRecord;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/devices", get(list))
        .route("/_matrix/client/v3/devices/{device_id}", get(get_one).put(update).delete(delete_one))
        .route("/_matrix/client/v3/delete_devices", post(delete_many))
}

fn device_json(device: &DeviceRecord) -> Value {
    let mut body = json!({ "device_id": device.device_id });
    if let Some(name) = &device.display_name {
        body["display_name"] = json!(name);
    }
    if let Some(ip) = &device.last_seen_ip {
        body["last_seen_ip"] = json!(ip);
    }
    if let Some(ts) = device.last_seen_ts {
        body["last_seen_ts"] = json!(ts);
    }
    body
}

async fn list(State(state): State<AppState>, auth: Auth) -> Result<axum::Json<Value>> {
    let devices = state.services.storage.list_devices(&auth.requester.user_id).await?;
    Ok(axum::Json(json!({ "devices": devices.iter().map(device_json).collect::<Vec<_>>() })))
}

async fn get_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(device_id): Path<String>,
) -> Result<axum::Json<Value>> {
    let device = state.services.storage.get_device(&auth.requester.user_id, &device_id).await?;
    let device = device.ok_or_else(|| Error::not_found("No such device"))?;
    Ok(axum::Json(device_json(&device)))
}

#[derive(Deserialize)]
struct UpdateBody {
    display_name: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(device_id): Path<String>,
    Json(body): Json<UpdateBody>,
) -> Result<axum::Json<Value>> {
    let storage = &state.services.storage;
    if !storage.set_device_display_name(&auth.requester.user_id, &device_id, body.display_name.as_deref()).await? {
        return Err(Error::not_found("No such device"));
    }
    // The name is served with the device's keys (`unsigned.device_display_name`).
    state.services.e2ee.device_list_changed(&auth.requester.user_id).await?;
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
struct DeleteOneBody {
    auth: Option<Value>,
}

async fn delete_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(device_id): Path<String>,
    Json(body): Json<DeleteOneBody>,
) -> Result<axum::Json<Value>> {
    super::account::require_password(&state, &auth.requester, body.auth.as_ref()).await?;
    state.services.accounts.delete_devices(&auth.requester.user_id, &[device_id]).await?;
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
struct DeleteManyBody {
    devices: Vec<String>,
    auth: Option<Value>,
}

async fn delete_many(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<DeleteManyBody>,
) -> Result<axum::Json<Value>> {
    super::account::require_password(&state, &auth.requester, body.auth.as_ref()).await?;
    state.services.accounts.delete_devices(&auth.requester.user_id, &body.devices).await?;
    Ok(axum::Json(json!({})))
}
