//! GET /_matrix/key/v2/server: this server's signing key, self-signed.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::Value;

use super::AppState;
use crate::error::{Error, Result};
use crate::service::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new().route("/_matrix/key/v2/server", get(server_keys))
}

async fn server_keys(State(state): State<AppState>) -> Result<axum::Json<Value>> {
    let services = &state.services;
    let body =
        services.signing_key.server_keys_response(&services.config.server_name, now_ms()).map_err(Error::internal)?;
    Ok(axum::Json(body))
}
