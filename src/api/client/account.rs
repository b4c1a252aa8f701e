//! Account management: password change, deactivation, and the 3PID endpoints
//! (this server supports no third-party identifiers).

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json};
use crate::error::{Error, Result};
use crate::service::accounts::identifier_user;
use crate::service::auth::Requester;
use crate::service::uia::{self, StageResult};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/account/password", post(change_password))
        .route("/_matrix/client/v3/account/deactivate", post(deactivate))
        .route("/_matrix/client/v3/account/3pid", get(list_threepids).post(threepid_denied))
        .route("/_matrix/client/v3/account/3pid/add", post(threepid_denied))
        .route("/_matrix/client/v3/account/3pid/bind", post(threepid_denied))
        .route("/_matrix/client/v3/account/3pid/delete", post(threepid_unbind))
        .route("/_matrix/client/v3/account/3pid/unbind", post(threepid_unbind))
        .route("/_matrix/client/v3/account/3pid/email/requestToken", post(threepid_denied))
        .route("/_matrix/client/v3/account/3pid/msisdn/requestToken", post(threepid_denied))
        .route("/_matrix/client/v3/account/password/email/requestToken", post(threepid_denied))
        .route("/_matrix/client/v3/account/password/msisdn/requestToken", post(threepid_denied))
}

/// Confirms the requester's identity with the m.login.password stage.
pub(super) async fn require_password(state: &AppState, requester: &Requester, auth: Option<&Value>) -> Result<()> {
    let accounts = &state.services.accounts;
    state
        .services
        .uia
        .authenticate(auth, &[&[uia::PASSWORD]], json!({}), |_, auth| async move {
            let named = identifier_user(&auth).and_then(|u| accounts.resolve_user_id(u));
            if named.as_deref() != Some(requester.user_id.as_str()) {
                return Ok(StageResult::Failed(Error::forbidden("The identifier must name the logged-in user")));
            }
            let password = auth.get("password").and_then(Value::as_str).unwrap_or_default();
            Ok(match accounts.check_password(&requester.user_id, password).await? {
                Some(_) => StageResult::Done,
                None => StageResult::Failed(Error::forbidden("Invalid password")),
            })
        })
        .await
        .map(|_| ())
}

#[derive(Deserialize)]
struct PasswordBody {
    new_password: String,
    logout_devices: Option<bool>,
    auth: Option<Value>,
}

async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<PasswordBody>,
) -> Result<axum::Json<Value>> {
    if body.new_password.len() > super::register::MAX_PASSWORD_LEN {
        return Err(Error::invalid_param("The password is too long"));
    }
    require_password(&state, &auth.requester, body.auth.as_ref()).await?;
    let accounts = &state.services.accounts;
    accounts.set_password(&auth.requester.user_id, body.new_password).await?;
    if body.logout_devices.unwrap_or(true) {
        accounts.revoke_sessions_except(&auth.requester.user_id, Some(&auth.requester.device_id)).await?;
    }
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
struct DeactivateBody {
    auth: Option<Value>,
}

async fn deactivate(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<DeactivateBody>,
) -> Result<axum::Json<Value>> {
    require_password(&state, &auth.requester, body.auth.as_ref()).await?;
    state.services.accounts.deactivate(&auth.requester.user_id).await?;
    Ok(axum::Json(json!({ "id_server_unbind_result": "no-support" })))
}

async fn list_threepids(_auth: Auth) -> axum::Json<Value> {
    axum::Json(json!({ "threepids": [] }))
}

/// No third-party identifiers can be added or used on this server.
pub(super) async fn threepid_denied() -> Error {
    Error::new(
        axum::http::StatusCode::FORBIDDEN,
        "M_THREEPID_DENIED",
        "Third-party identifiers are not supported on this server",
    )
}

/// Nothing is ever bound, so there is nothing to unbind.
async fn threepid_unbind(_auth: Auth) -> axum::Json<Value> {
    axum::Json(json!({ "id_server_unbind_result": "no-support" }))
}
