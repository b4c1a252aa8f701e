//! Presence: `GET/PUT /presence/{userId}/status`.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json};
use crate::error::{Error, Result};
use crate::service::presence;

pub fn routes() -> Router<AppState> {
    Router::new().route("/_matrix/client/v3/presence/{user_id}/status", get(get_status).put(set_status))
}

#[derive(Deserialize)]
struct StatusBody {
    presence: String,
    /// Absent keeps the current message; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    status_msg: Option<Option<String>>,
}

/// Distinguishes a `null` field (`Some(None)`) from an absent one (`None`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

async fn set_status(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
    Json(body): Json<StatusBody>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "set presence")?;
    let new_state = presence::State::parse(&body.presence)?;
    state.services.presence.set(&user_id, new_state, body.status_msg).await?;
    Ok(axum::Json(json!({})))
}

async fn get_status(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> Result<axum::Json<Value>> {
    let services = &state.services;
    let viewer = &auth.requester.user_id;
    if services.storage.get_user(&user_id).await?.is_none() {
        return Err(Error::not_found("No such user"));
    }
    // Presence is shared with those who share a room with the user.
    if *viewer != user_id
        && services.storage.users_sharing_a_room(viewer, std::slice::from_ref(&user_id)).await?.is_empty()
    {
        return Err(Error::forbidden("You are not allowed to see their presence"));
    }
    let content = services.presence.content(&user_id).await?;
    match content {
        Some(content) => Ok(axum::Json(content)),
        None if services.presence.enabled() => Ok(axum::Json(json!({ "presence": "offline" }))),
        None => Err(Error::not_found("Presence is disabled on this server")),
    }
}
