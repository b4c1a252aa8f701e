//! Push rules (`/pushrules/...`), `GET /notifications` and pushers.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json, Query};
use crate::error::{Error, Result};
use crate::service::push::{Placement, PusherRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/pushrules", get(all_rules))
        .route("/_matrix/client/v3/pushrules/", get(all_rules))
        .route("/_matrix/client/v3/pushrules/global", get(global_rules))
        .route("/_matrix/client/v3/pushrules/global/", get(global_rules))
        .route("/_matrix/client/v3/pushrules/global/{kind}/{rule_id}", get(get_rule).put(put_rule).delete(delete_rule))
        .route("/_matrix/client/v3/pushrules/global/{kind}/{rule_id}/enabled", get(get_enabled).put(put_enabled))
        .route("/_matrix/client/v3/pushrules/global/{kind}/{rule_id}/actions", get(get_actions).put(put_actions))
        .route("/_matrix/client/v3/notifications", get(notifications))
        .route("/_matrix/client/v3/pushers", get(pushers))
        .route("/_matrix/client/v3/pushers/set", post(set_pusher))
}

fn user(auth: &Auth) -> Result<OwnedUserId> {
    OwnedUserId::try_from(auth.requester.user_id.as_str()).map_err(Error::internal)
}

async fn all_rules(State(state): State<AppState>, auth: Auth) -> Result<axum::Json<Value>> {
    Ok(axum::Json(json!({ "global": state.services.push.global_rules(&user(&auth)?).await? })))
}

async fn global_rules(State(state): State<AppState>, auth: Auth) -> Result<axum::Json<Value>> {
    Ok(axum::Json(state.services.push.global_rules(&user(&auth)?).await?))
}

async fn get_rule(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    Ok(axum::Json(state.services.push.rule(&user(&auth)?, &kind, &rule_id).await?))
}

#[derive(Deserialize)]
struct PlacementQuery {
    before: Option<String>,
    after: Option<String>,
}

async fn put_rule(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
    Query(placement): Query<PlacementQuery>,
    Json(body): Json<Value>,
) -> Result<axum::Json<Value>> {
    let services = &state.services;
    services
        .push
        .put_rule(
            &services.account_data,
            &user(&auth)?,
            &kind,
            &rule_id,
            Placement { before: placement.before.as_deref(), after: placement.after.as_deref() },
            &body,
        )
        .await?;
    Ok(axum::Json(json!({})))
}

async fn delete_rule(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    let services = &state.services;
    services.push.delete_rule(&services.account_data, &user(&auth)?, &kind, &rule_id).await?;
    Ok(axum::Json(json!({})))
}

async fn get_attribute(
    state: &AppState,
    auth: &Auth,
    kind: &str,
    rule_id: &str,
    attr: &str,
) -> Result<axum::Json<Value>> {
    Ok(axum::Json(state.services.push.rule_attribute(&user(auth)?, kind, rule_id, attr).await?))
}

async fn put_attribute(
    state: &AppState,
    auth: &Auth,
    kind: &str,
    rule_id: &str,
    attr: &str,
    body: &Value,
) -> Result<axum::Json<Value>> {
    let services = &state.services;
    services.push.set_rule_attribute(&services.account_data, &user(auth)?, kind, rule_id, attr, body).await?;
    Ok(axum::Json(json!({})))
}

async fn get_enabled(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    get_attribute(&state, &auth, &kind, &rule_id, "enabled").await
}

async fn put_enabled(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<axum::Json<Value>> {
    put_attribute(&state, &auth, &kind, &rule_id, "enabled", &body).await
}

async fn get_actions(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    get_attribute(&state, &auth, &kind, &rule_id, "actions").await
}

async fn put_actions(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<axum::Json<Value>> {
    put_attribute(&state, &auth, &kind, &rule_id, "actions", &body).await
}

#[derive(Deserialize)]
struct NotificationsQuery {
    from: Option<String>,
    limit: Option<i64>,
    only: Option<String>,
}

async fn notifications(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<NotificationsQuery>,
) -> Result<axum::Json<Value>> {
    let push = &state.services.push;
    Ok(axum::Json(
        push.notifications(&auth.requester.user_id, query.from.as_deref(), query.limit, query.only.as_deref()).await?,
    ))
}

async fn pushers(State(state): State<AppState>, auth: Auth) -> Result<axum::Json<Value>> {
    Ok(axum::Json(state.services.push.pushers(&auth.requester.user_id).await?))
}

async fn set_pusher(
    State(state): State<AppState>,
    auth: Auth,
    Json(request): Json<PusherRequest>,
) -> Result<axum::Json<Value>> {
    state.services.push.set_pusher(&auth.requester.user_id, request).await?;
    Ok(axum::Json(json!({})))
}
