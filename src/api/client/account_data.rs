//! Account data (global and per room) and filters.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json};
use crate::error::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/user/{user_id}/account_data/{data_type}", get(get_global).put(put_global))
        .route(
            "/_matrix/client/v3/user/{user_id}/rooms/{room_id}/account_data/{data_type}",
            get(get_room).put(put_room),
        )
        .route("/_matrix/client/v3/user/{user_id}/filter", post(create_filter))
        .route("/_matrix/client/v3/user/{user_id}/filter/{filter_id}", get(get_filter))
}

/// Types the server maintains itself, which clients may not set here.
fn check_settable(data_type: &str) -> Result<()> {
    if matches!(data_type, "m.fully_read" | "m.push_rules") {
        return Err(Error::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "M_BAD_JSON",
            format!("Cannot set {data_type} through this API"),
        ));
    }
    Ok(())
}

fn check_room_id(room_id: &str) -> Result<()> {
    ruma::RoomId::parse(room_id).map(|_| ()).map_err(|_| Error::invalid_param("Invalid room id"))
}

async fn get_global(
    State(state): State<AppState>,
    auth: Auth,
    Path((user_id, data_type)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "read account data")?;
    Ok(axum::Json(state.services.account_data.get(&user_id, None, &data_type).await?))
}

async fn put_global(
    State(state): State<AppState>,
    auth: Auth,
    Path((user_id, data_type)): Path<(String, String)>,
    Json(content): Json<Value>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "add account data")?;
    check_settable(&data_type)?;
    state.services.account_data.put(&user_id, None, &data_type, &content).await?;
    Ok(axum::Json(json!({})))
}

async fn get_room(
    State(state): State<AppState>,
    auth: Auth,
    Path((user_id, room_id, data_type)): Path<(String, String, String)>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "read account data")?;
    check_room_id(&room_id)?;
    Ok(axum::Json(state.services.account_data.get(&user_id, Some(&room_id), &data_type).await?))
}

async fn put_room(
    State(state): State<AppState>,
    auth: Auth,
    Path((user_id, room_id, data_type)): Path<(String, String, String)>,
    Json(content): Json<Value>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "add account data")?;
    check_room_id(&room_id)?;
    check_settable(&data_type)?;
    state.services.account_data.put(&user_id, Some(&room_id), &data_type, &content).await?;
    Ok(axum::Json(json!({})))
}

async fn create_filter(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
    Json(filter): Json<Value>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "create filters")?;
    let filter_id = state.services.account_data.create_filter(&user_id, &filter).await?;
    Ok(axum::Json(json!({ "filter_id": filter_id })))
}

async fn get_filter(
    State(state): State<AppState>,
    auth: Auth,
    Path((user_id, filter_id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "read filters")?;
    Ok(axum::Json(Value::clone(&*state.services.account_data.get_filter(&user_id, &filter_id).await?)))
}
