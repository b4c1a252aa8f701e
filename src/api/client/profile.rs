//! Profiles: display name and avatar URL.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json};
use crate::error::{Error, Result};
use crate::service::accounts::ProfileField;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/profile/{user_id}", get(get_profile))
        .route("/_matrix/client/v3/profile/{user_id}/{key}", get(get_field).put(set_field).delete(delete_field))
}

fn profile_json(displayname: Option<String>, avatar_url: Option<String>) -> Value {
    let mut body = Map::new();
    if let Some(name) = displayname {
        body.insert("displayname".into(), json!(name));
    }
    if let Some(url) = avatar_url {
        body.insert("avatar_url".into(), json!(url));
    }
    Value::Object(body)
}

async fn get_profile(State(state): State<AppState>, Path(user_id): Path<String>) -> Result<axum::Json<Value>> {
    let (displayname, avatar_url) = state.services.accounts.profile(&user_id).await?;
    Ok(axum::Json(profile_json(displayname, avatar_url)))
}

fn field(key: &str) -> Result<ProfileField> {
    ProfileField::parse(key).ok_or_else(|| Error::not_found(format!("Profile field {key} is not supported")))
}

async fn get_field(
    State(state): State<AppState>,
    Path((user_id, key)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    let field = field(&key)?;
    let (displayname, avatar_url) = state.services.accounts.profile(&user_id).await?;
    let value = match field {
        ProfileField::DisplayName => displayname,
        ProfileField::AvatarUrl => avatar_url,
    };
    match value {
        Some(value) => Ok(axum::Json(json!({ key: value }))),
        None => Err(Error::not_found(format!("{key} is not set"))),
    }
}

async fn set_field(
    State(state): State<AppState>,
    auth: Auth,
    Path((user_id, key)): Path<(String, String)>,
    Json(body): Json<Map<String, Value>>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "set the profile")?;
    let field = ProfileField::parse(&key)
        .ok_or_else(|| Error::forbidden(format!("Profile field {key} cannot be set on this server")))?;
    let value = match body.get(&key) {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Null) => None,
        Some(_) => return Err(Error::bad_json(format!("{key} must be a string"))),
        None => return Err(Error::missing_param(format!("The body must contain {key}"))),
    };
    if field == ProfileField::AvatarUrl && value.is_some_and(|v| !v.is_empty() && !v.starts_with("mxc://")) {
        return Err(Error::invalid_param("avatar_url must be an mxc:// URI"));
    }
    if value.is_some_and(|v| v.len() > 1024) {
        return Err(Error::new(axum::http::StatusCode::BAD_REQUEST, "M_PROFILE_TOO_LARGE", "The value is too long"));
    }
    state.services.accounts.set_profile_field(&user_id, field, value.filter(|v| !v.is_empty())).await?;
    Ok(axum::Json(json!({})))
}

async fn delete_field(
    State(state): State<AppState>,
    auth: Auth,
    Path((user_id, key)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    super::require_self(&auth.requester, &user_id, "change the profile")?;
    let field = ProfileField::parse(&key)
        .ok_or_else(|| Error::forbidden(format!("Profile field {key} cannot be set on this server")))?;
    state.services.accounts.set_profile_field(&user_id, field, None).await?;
    Ok(axum::Json(json!({})))
}
