//! Room tags (`/user/{userId}/rooms/{roomId}/tags`), kept as `m.tag` room account data.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use serde_json::{Map, Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json};
use crate::error::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/user/{user_id}/rooms/{room_id}/tags", get(get_tags))
        .route("/_matrix/client/v3/user/{user_id}/rooms/{room_id}/tags/{tag}", put(put_tag).delete(delete_tag))
}

async fn load(state: &AppState, user_id: &str, room_id: &str) -> Result<Map<String, Value>> {
    match state.services.account_data.get(user_id, Some(room_id), "m.tag").await {
        Ok(value) => Ok(value.get("tags").and_then(Value::as_object).cloned().unwrap_or_default()),
        Err(e) if e.errcode == "M_NOT_FOUND" => Ok(Map::new()),
        Err(e) => Err(e),
    }
}

async fn save(state: &AppState, user_id: &str, room_id: &str, tags: Map<String, Value>) -> Result<()> {
    state.services.account_data.put(user_id, Some(room_id), "m.tag", &json!({ "tags": tags })).await
}

async fn get_tags(
    State(state): State<AppState>,
    auth: Auth,
    Path((user_id, room_id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "read tags")?;
    Ok(axum::Json(json!({ "tags": load(&state, &user_id, &room_id).await? })))
}

async fn put_tag(
    State(state): State<AppState>,
    auth: Auth,
    Path((user_id, room_id, tag)): Path<(String, String, String)>,
    Json(body): Json<Map<String, Value>>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "set tags")?;
    ruma::RoomId::parse(&room_id).map_err(|_| Error::invalid_param("Invalid room id"))?;
    if body.get("order").is_some_and(|o| !o.is_number()) {
        return Err(Error::bad_json("order must be a number"));
    }
    let mut tags = load(&state, &user_id, &room_id).await?;
    tags.insert(tag, Value::Object(body));
    save(&state, &user_id, &room_id, tags).await?;
    Ok(axum::Json(json!({})))
}

async fn delete_tag(
    State(state): State<AppState>,
    auth: Auth,
    Path((user_id, room_id, tag)): Path<(String, String, String)>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "delete tags")?;
    let mut tags = load(&state, &user_id, &room_id).await?;
    tags.remove(&tag);
    save(&state, &user_id, &room_id, tags).await?;
    Ok(axum::Json(json!({})))
}
