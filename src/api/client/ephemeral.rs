//! Typing notifications, read receipts and read markers.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json};
use crate::error::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/rooms/{room_id}/typing/{user_id}", put(typing))
        .route("/_matrix/client/v3/rooms/{room_id}/receipt/{receipt_type}/{event_id}", post(receipt))
        .route("/_matrix/client/v3/rooms/{room_id}/read_markers", post(read_markers))
}

#[derive(Deserialize)]
struct TypingBody {
    typing: bool,
    timeout: Option<u64>,
}

async fn typing(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, user_id)): Path<(String, String)>,
    Json(body): Json<TypingBody>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "set typing notifications")?;
    let rooms = &state.services.rooms;
    rooms.room_version(&room_id).await.map_err(|_| Error::forbidden("You are not in this room"))?;
    rooms.require_joined(&room_id, &user_id).await?;
    let timeout = Duration::from_millis(body.timeout.unwrap_or(30_000));
    state.services.ephemeral.set_typing(&room_id, &user_id, body.typing, timeout);
    Ok(axum::Json(json!({})))
}

/// Checks that the user is in the room and can see the event a receipt or marker points at.
async fn check_target(state: &AppState, auth: &Auth, room_id: &str, event_id: &str) -> Result<()> {
    let rooms = &state.services.rooms;
    rooms.room_version(room_id).await.map_err(|_| Error::forbidden("You are not in this room"))?;
    rooms.require_joined(room_id, &auth.requester.user_id).await?;
    rooms.event_for_user(room_id, event_id, &auth.requester.user_id).await?;
    Ok(())
}

async fn set_fully_read(state: &AppState, auth: &Auth, room_id: &str, event_id: &str) -> Result<()> {
    let content = json!({ "event_id": event_id });
    state.services.account_data.put(&auth.requester.user_id, Some(room_id), "m.fully_read", &content).await
}

#[derive(Deserialize, Default)]
struct ReceiptBody {
    thread_id: Option<String>,
}

async fn receipt(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, receipt_type, event_id)): Path<(String, String, String)>,
    Json(body): Json<ReceiptBody>,
) -> Result<axum::Json<Value>> {
    if !matches!(receipt_type.as_str(), "m.read" | "m.read.private" | "m.fully_read") {
        return Err(Error::invalid_param(format!("Unknown receipt type {receipt_type}")));
    }
    if let Some(thread) = &body.thread_id {
        if receipt_type == "m.fully_read" {
            return Err(Error::invalid_param("m.fully_read cannot be threaded"));
        }
        if thread != "main" && !thread.starts_with('$') {
            return Err(Error::invalid_param("thread_id must be \"main\" or an event id"));
        }
    }
    check_target(&state, &auth, &room_id, &event_id).await?;
    if receipt_type == "m.fully_read" {
        set_fully_read(&state, &auth, &room_id, &event_id).await?;
    } else {
        let ephemeral = &state.services.ephemeral;
        let user = &auth.requester.user_id;
        ephemeral.put_receipt(&room_id, user, &receipt_type, &event_id, body.thread_id.as_deref()).await?;
    }
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
struct ReadMarkersBody {
    #[serde(rename = "m.fully_read")]
    fully_read: Option<String>,
    #[serde(rename = "m.read")]
    read: Option<String>,
    #[serde(rename = "m.read.private")]
    read_private: Option<String>,
}

async fn read_markers(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Json(body): Json<ReadMarkersBody>,
) -> Result<axum::Json<Value>> {
    let user = &auth.requester.user_id;
    // Every target is checked before anything is stored: a bad one changes nothing.
    for event_id in [&body.fully_read, &body.read, &body.read_private].into_iter().flatten() {
        check_target(&state, &auth, &room_id, event_id).await?;
    }
    if let Some(event_id) = &body.fully_read {
        set_fully_read(&state, &auth, &room_id, event_id).await?;
    }
    for (receipt_type, event_id) in [("m.read", &body.read), ("m.read.private", &body.read_private)] {
        if let Some(event_id) = event_id {
            state.services.ephemeral.put_receipt(&room_id, user, receipt_type, event_id, None).await?;
        }
    }
    Ok(axum::Json(json!({})))
}
