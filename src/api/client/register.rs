//! Registration: POST /register (user-interactive auth), availability and token validity.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{ClientIp, Json, Query};
use crate::config::RegistrationMode;
use crate::error::{Error, Result};
use crate::service::accounts::SessionRequest;
use crate::service::rate_limit::Action;
use crate::service::uia::{self, StageResult};

/// Longest password accepted: hashing cost grows with length.
pub const MAX_PASSWORD_LEN: usize = 512;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/register", post(register))
        .route("/_matrix/client/v3/register/available", get(available))
        .route("/_matrix/client/v1/register/m.login.registration_token/validity", get(token_validity))
        .route("/_matrix/client/v3/register/email/requestToken", post(super::account::threepid_denied))
        .route("/_matrix/client/v3/register/msisdn/requestToken", post(super::account::threepid_denied))
}

#[derive(Deserialize)]
struct KindQuery {
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RegisterBody {
    username: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
    #[serde(default)]
    refresh_token: bool,
    auth: Option<Value>,
}

async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(query): Query<KindQuery>,
    Json(body): Json<RegisterBody>,
) -> Result<axum::Json<Value>> {
    let services = &state.services;
    let guest = match query.kind.as_deref() {
        None | Some("user") => false,
        Some("guest") => true,
        Some(other) => {
            return Err(Error::invalid_param(format!("Unknown account kind {other:?}")));
        }
    };
    services.rate_limiter.check(Action::Register, &ip)?;

    let session = SessionRequest {
        device_id: body.device_id.clone(),
        display_name: body.initial_device_display_name.clone(),
        want_refresh_token: body.refresh_token,
    };

    if guest {
        if !services.config.registration.allow_guests {
            return Err(Error::new(
                axum::http::StatusCode::FORBIDDEN,
                "M_GUEST_ACCESS_FORBIDDEN",
                "Guest access is disabled",
            ));
        }
        let user_id = services.accounts.create_guest().await?;
        return respond(&state, user_id, session, body.inhibit_login).await;
    }

    let flows: &[&[&str]] = match services.registration.mode() {
        RegistrationMode::Closed => return Err(Error::forbidden("Registration is disabled")),
        RegistrationMode::Open => &[&[uia::DUMMY]],
        RegistrationMode::Token => &[&[uia::REGISTRATION_TOKEN]],
    };

    // The request is checked before authentication, so a client learns of a
    // taken or bad user name before it spends a registration token.
    let localpart = match &body.username {
        Some(name) => name.clone(),
        None => format!("u{}", crate::service::secrets::random_id(12).to_lowercase()),
    };
    services.accounts.is_available(&localpart).await?;
    let password = body.password.clone().ok_or_else(|| Error::missing_param("A password is required"))?;
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Error::invalid_param("The password is too long"));
    }

    let registration = &services.registration;
    let completed = services
        .uia
        .authenticate(body.auth.as_ref(), flows, json!({}), |stage, auth| async move {
            Ok(match stage.as_str() {
                uia::DUMMY => StageResult::Done,
                uia::REGISTRATION_TOKEN => {
                    let token = auth.get("token").and_then(Value::as_str).unwrap_or_default();
                    if registration.token_valid(token).await? {
                        StageResult::Done
                    } else {
                        StageResult::Failed(Error::new(
                            axum::http::StatusCode::UNAUTHORIZED,
                            "M_UNAUTHORIZED",
                            "Invalid registration token",
                        ))
                    }
                }
                _ => StageResult::Failed(Error::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "M_UNRECOGNIZED",
                    "Unknown stage",
                )),
            })
        })
        .await?;

    let mut is_admin = false;
    if let Some(token) = &completed.registration_token {
        match services.registration.consume_token(token).await? {
            Some(grants_admin) => is_admin = grants_admin,
            None => return Err(Error::forbidden("The registration token has been used up")),
        }
    }
    let user_id = services.accounts.create(&localpart, Some(password), is_admin, false).await?;
    respond(&state, user_id, session, body.inhibit_login).await
}

async fn respond(
    state: &AppState,
    user_id: String,
    session: SessionRequest,
    inhibit_login: bool,
) -> Result<axum::Json<Value>> {
    if inhibit_login {
        return Ok(axum::Json(json!({ "user_id": user_id })));
    }
    let tokens = state.services.accounts.start_session(&user_id, session).await?;
    Ok(axum::Json(super::session::session_json(&tokens)))
}

#[derive(Deserialize)]
struct AvailableQuery {
    username: String,
}

async fn available(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(query): Query<AvailableQuery>,
) -> Result<axum::Json<Value>> {
    state.services.rate_limiter.check(Action::Register, &ip)?;
    state.services.accounts.is_available(&query.username).await?;
    Ok(axum::Json(json!({ "available": true })))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: String,
}

async fn token_validity(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(query): Query<TokenQuery>,
) -> Result<axum::Json<Value>> {
    if state.services.registration.mode() != RegistrationMode::Token {
        return Err(Error::forbidden("Registration tokens are not in use on this server"));
    }
    state.services.rate_limiter.check(Action::Register, &ip)?;
    let valid = state.services.registration.token_valid(&query.token).await?;
    Ok(axum::Json(json!({ "valid": valid })))
}
