//! Reporting events and rooms to the server's admins.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json};
use crate::error::{Error, Result};
use crate::service::now_ms;
use crate::storage::NewReport;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/rooms/{room_id}/report/{event_id}", post(report_event))
        .route("/_matrix/client/v3/rooms/{room_id}/report", post(report_room))
}

#[derive(Deserialize)]
struct ReportBody {
    reason: Option<String>,
    score: Option<i64>,
}

async fn report_event(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_id)): Path<(String, String)>,
    Json(body): Json<ReportBody>,
) -> Result<axum::Json<Value>> {
    if body.score.is_some_and(|s| !(-100..=0).contains(&s)) {
        return Err(Error::invalid_param("score must be between -100 and 0"));
    }
    // Only events the reporter can see can be reported (404 otherwise).
    state.services.rooms.event_for_user(&room_id, &event_id, &auth.requester.user_id).await?;
    let report = NewReport {
        room_id: &room_id,
        event_id: Some(&event_id),
        reporter: &auth.requester.user_id,
        reason: body.reason.as_deref(),
        score: body.score,
        now: now_ms(),
    };
    state.services.storage.add_report(&report).await?;
    tracing::warn!(%room_id, %event_id, reporter = %auth.requester.user_id, "event reported");
    Ok(axum::Json(json!({})))
}

async fn report_room(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Json(body): Json<ReportBody>,
) -> Result<axum::Json<Value>> {
    state.services.rooms.room_version(&room_id).await?;
    let report = NewReport {
        room_id: &room_id,
        event_id: None,
        reporter: &auth.requester.user_id,
        reason: body.reason.as_deref(),
        score: None,
        now: now_ms(),
    };
    state.services.storage.add_report(&report).await?;
    tracing::warn!(%room_id, reporter = %auth.requester.user_id, "room reported");
    Ok(axum::Json(json!({})))
}
