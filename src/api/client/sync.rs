//! GET /sync.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

use crate::api::AppState;
use crate::api::extract::{Auth, Query};
use crate::error::{Error, Result};
use crate::service::presence;
use crate::service::sync::{self, SyncFilter, SyncRequest, SyncToken};

pub fn routes() -> Router<AppState> {
    Router::new().route("/_matrix/client/v3/sync", get(sync_handler))
}

#[derive(Deserialize)]
struct SyncQuery {
    since: Option<String>,
    timeout: Option<u64>,
    #[serde(default)]
    full_state: bool,
    filter: Option<String>,
    set_presence: Option<String>,
}

async fn sync_handler(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<SyncQuery>,
) -> Result<axum::Json<Value>> {
    let services = &state.services;
    let set_presence = query.set_presence.as_deref().map(presence::State::parse).transpose()?;
    let since = query.since.as_deref().map(SyncToken::parse).transpose()?;
    let filter = match query.filter.as_deref() {
        None => SyncFilter::default(),
        Some(text) if text.trim_start().starts_with('{') => {
            let value: Value =
                serde_json::from_str(text).map_err(|_| Error::bad_json("The filter is not valid JSON"))?;
            SyncFilter::from_json(&value)?
        }
        Some(id) => {
            // Boxed, like the sync's own steps: see `sync::sync`.
            let stored = Box::pin(services.account_data.get_filter(&auth.requester.user_id, id)).await?;
            SyncFilter::from_json(&stored)?
        }
    };
    let request = SyncRequest {
        device_id: auth.requester.device_id.clone(),
        since,
        timeout: Duration::from_millis(query.timeout.unwrap_or(0)),
        full_state: query.full_state,
        filter: Box::new(filter),
        set_presence,
    };
    Ok(axum::Json(sync::sync(services, &auth.requester.user_id, request).await?))
}
