//! Sessions: login, token refresh, logout and whoami.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, ClientIp, Json};
use crate::error::{Error, Result};
use crate::service::accounts::{SessionRequest, SessionTokens, identifier_user};
use crate::service::rate_limit::Action;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/login", get(login_flows).post(login))
        .route("/_matrix/client/v3/refresh", post(refresh))
        .route("/_matrix/client/v1/refresh", post(refresh))
        .route("/_matrix/client/v3/logout", post(logout))
        .route("/_matrix/client/v3/logout/all", post(logout_all))
        .route("/_matrix/client/v3/account/whoami", get(whoami))
}

/// The response body of a successful login or registration.
pub fn session_json(tokens: &SessionTokens) -> Value {
    let mut body = json!({
        "user_id": tokens.user_id,
        "access_token": tokens.access_token,
        "device_id": tokens.device_id,
    });
    if let Some(refresh) = &tokens.refresh_token {
        body["refresh_token"] = json!(refresh);
    }
    if let Some(expires) = tokens.expires_in_ms {
        body["expires_in_ms"] = json!(expires);
    }
    body
}

async fn login_flows() -> axum::Json<Value> {
    axum::Json(json!({ "flows": [{ "type": "m.login.password" }] }))
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    refresh_token: bool,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginBody>,
) -> Result<axum::Json<Value>> {
    let services = &state.services;
    if body.kind != "m.login.password" {
        return Err(Error::new(axum::http::StatusCode::BAD_REQUEST, "M_UNKNOWN", "Unknown login type"));
    }
    let rest = Value::Object(body.rest);
    let user = identifier_user(&rest).ok_or_else(|| Error::bad_json("A user identifier (m.id.user) is required"))?;
    let password = body.password.ok_or_else(|| Error::missing_param("A password is required"))?;
    if password.len() > super::register::MAX_PASSWORD_LEN {
        return Err(Error::forbidden("Invalid username or password"));
    }
    services.rate_limiter.check(Action::Login, &ip)?;
    if let Some(user_id) = services.accounts.resolve_user_id(user) {
        services.rate_limiter.check(Action::Login, &user_id)?;
    }
    let user_id = services.accounts.login_with_password(user, &password).await?;
    let tokens = services
        .accounts
        .start_session(
            &user_id,
            SessionRequest {
                device_id: body.device_id,
                display_name: body.initial_device_display_name,
                want_refresh_token: body.refresh_token,
            },
        )
        .await?;
    Ok(axum::Json(session_json(&tokens)))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(State(state): State<AppState>, Json(body): Json<RefreshBody>) -> Result<axum::Json<Value>> {
    let tokens = state.services.accounts.refresh(&body.refresh_token).await?;
    let mut response = session_json(&tokens);
    if let Some(object) = response.as_object_mut() {
        object.remove("user_id");
        object.remove("device_id");
    }
    Ok(axum::Json(response))
}

async fn logout(State(state): State<AppState>, auth: Auth) -> Result<axum::Json<Value>> {
    state.services.accounts.logout(&auth.requester).await?;
    Ok(axum::Json(json!({})))
}

async fn logout_all(State(state): State<AppState>, auth: Auth) -> Result<axum::Json<Value>> {
    state.services.accounts.logout_all(&auth.requester.user_id).await?;
    Ok(axum::Json(json!({})))
}

async fn whoami(auth: Auth) -> axum::Json<Value> {
    axum::Json(json!({
        "user_id": auth.requester.user_id,
        "device_id": auth.requester.device_id,
        "is_guest": auth.requester.is_guest,
    }))
}
