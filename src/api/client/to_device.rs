//! Send-to-device messaging.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::put;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json};
use crate::error::Result;

pub fn routes() -> Router<AppState> {
    Router::new().route("/_matrix/client/v3/sendToDevice/{event_type}/{txn_id}", put(send))
}

#[derive(Deserialize)]
struct SendBody {
    messages: Map<String, Value>,
}

async fn send(
    State(state): State<AppState>,
    auth: Auth,
    Path((event_type, txn_id)): Path<(String, String)>,
    Json(body): Json<SendBody>,
) -> Result<axum::Json<Value>> {
    state.services.e2ee.send_to_device(&auth.requester, &event_type, &txn_id, &body.messages).await?;
    Ok(axum::Json(json!({})))
}
