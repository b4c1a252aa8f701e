//! Discovery: spec versions, well-known files and capabilities.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::Auth;
use crate::error::{Error, Result};
use crate::service::room_versions;

/// The spec versions whose client-server API this server implements.
const SPEC_VERSIONS: &[&str] =
    &["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/versions", get(versions))
        .route("/.well-known/matrix/client", get(well_known_client))
        .route("/.well-known/matrix/server", get(well_known_server))
        .route("/_matrix/client/v3/capabilities", get(capabilities))
}

async fn versions() -> Json<Value> {
    Json(json!({ "versions": SPEC_VERSIONS, "unstable_features": {} }))
}

async fn well_known_client(State(state): State<AppState>) -> Result<Json<Value>> {
    let base_url = &state.services.config.well_known.client;
    if base_url.is_empty() {
        return Err(Error::not_found("No client discovery information is configured"));
    }
    Ok(Json(json!({ "m.homeserver": { "base_url": base_url } })))
}

async fn well_known_server(State(state): State<AppState>) -> Result<Json<Value>> {
    let server = &state.services.config.well_known.server;
    if server.is_empty() {
        return Err(Error::not_found("No server delegation is configured"));
    }
    Ok(Json(json!({ "m.server": server })))
}

async fn capabilities(State(state): State<AppState>, _auth: Auth) -> Json<Value> {
    let available: serde_json::Map<String, Value> =
        room_versions::SUPPORTED.iter().map(|v| (v.to_string(), json!("stable"))).collect();
    Json(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": { "default": state.services.config.default_room_version, "available": available },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
            "m.get_login_token": { "enabled": false },
        }
    }))
}
