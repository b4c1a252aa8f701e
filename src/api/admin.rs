//! Synapse-compatible shared-secret registration (`/_synapse/admin/v1/register`),
//! which operator tools and test suites use to create accounts.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::extract::Json;
use crate::error::{Error, Result};
use crate::service::accounts::SessionRequest;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_synapse/admin/v1/register", get(nonce).post(register))
        .route("/_kith/admin/v1/events/{event_id}/pdu", get(event_pdu))
}

/// An event's PDU exactly as stored, for debugging and for tests that verify
/// hashes and signatures independently. Server admins only.
async fn event_pdu(
    State(state): State<AppState>,
    auth: super::extract::Auth,
    axum::extract::Path(event_id): axum::extract::Path<String>,
) -> Result<axum::Json<Value>> {
    let services = &state.services;
    let is_admin = services.storage.get_user(&auth.requester.user_id).await?.is_some_and(|u| u.is_admin);
    if !is_admin {
        return Err(Error::forbidden("Server admins only"));
    }
    let event = services.storage.get_event(&event_id).await?.ok_or_else(|| Error::not_found("Unknown event"))?;
    let (room_version, pdu) = services.rooms.raw_pdu(&event_id).await?;
    Ok(axum::Json(json!({
        "room_version": room_version,
        "event_id": event_id,
        "redacted": event.redacted_by.is_some(),
        "pdu": pdu,
    })))
}

async fn nonce(State(state): State<AppState>) -> Result<axum::Json<Value>> {
    Ok(axum::Json(json!({ "nonce": state.services.registration.new_nonce().await? })))
}

#[derive(Deserialize)]
struct RegisterBody {
    nonce: String,
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
    mac: String,
    displayname: Option<String>,
}

async fn register(State(state): State<AppState>, Json(body): Json<RegisterBody>) -> Result<axum::Json<Value>> {
    let services = &state.services;
    services
        .registration
        .check_shared_secret_mac(&body.nonce, &body.username, &body.password, body.admin, &body.mac)
        .await?;
    if body.password.len() > crate::api::client::MAX_PASSWORD_LEN {
        return Err(Error::invalid_param("The password is too long"));
    }
    let user_id = services.accounts.create(&body.username, Some(body.password), body.admin, false).await?;
    if let Some(name) = body.displayname.as_deref() {
        services
            .accounts
            .set_profile_field(&user_id, crate::service::accounts::ProfileField::DisplayName, Some(name))
            .await?;
    }
    let tokens = services.accounts.start_session(&user_id, SessionRequest::default()).await?;
    Ok(axum::Json(json!({
        "user_id": tokens.user_id,
        "access_token": tokens.access_token,
        "device_id": tokens.device_id,
        "home_server": services.config.server_name,
    })))
}
