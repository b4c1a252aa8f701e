//! Rooms: creation, membership, sending, and reading events, state and history.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json, Query};
use crate::error::{Error, Result};
use crate::service::rooms::{CreateRoomRequest, EventDraft, HierarchyRequest, MessagesRequest, Origin};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/createRoom", post(create_room))
        .route("/_matrix/client/v3/joined_rooms", get(joined_rooms))
        .route("/_matrix/client/v3/join/{room_id_or_alias}", post(join_by_id_or_alias))
        .route("/_matrix/client/v3/knock/{room_id_or_alias}", post(knock))
        .route("/_matrix/client/v3/rooms/{room_id}/join", post(join_room))
        .route("/_matrix/client/v3/rooms/{room_id}/invite", post(invite))
        .route("/_matrix/client/v3/rooms/{room_id}/leave", post(leave))
        .route("/_matrix/client/v3/rooms/{room_id}/forget", post(forget))
        .route("/_matrix/client/v3/rooms/{room_id}/kick", post(kick))
        .route("/_matrix/client/v3/rooms/{room_id}/ban", post(ban))
        .route("/_matrix/client/v3/rooms/{room_id}/unban", post(unban))
        .route("/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}", put(send))
        .route(
            "/_matrix/client/v3/rooms/{room_id}/state/{event_type}",
            get(get_state_event_empty_key).put(put_state_empty_key),
        )
        .route("/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}", get(get_state_event).put(put_state))
        // With an empty state key the trailing slash is optional.
        .route(
            "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/",
            get(get_state_event_empty_key).put(put_state_empty_key),
        )
        .route("/_matrix/client/v3/rooms/{room_id}/redact/{event_id}/{txn_id}", put(redact))
        .route("/_matrix/client/v3/rooms/{room_id}/event/{event_id}", get(get_event))
        .route("/_matrix/client/v3/rooms/{room_id}/state", get(get_state))
        .route("/_matrix/client/v3/rooms/{room_id}/members", get(members))
        .route("/_matrix/client/v3/rooms/{room_id}/joined_members", get(joined_members))
        .route("/_matrix/client/v3/rooms/{room_id}/messages", get(messages))
        .route("/_matrix/client/v3/rooms/{room_id}/upgrade", post(upgrade))
        .route("/_matrix/client/v1/rooms/{room_id}/hierarchy", get(hierarchy))
}

#[derive(Deserialize)]
struct UpgradeBody {
    new_version: String,
}

async fn upgrade(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Json(body): Json<UpgradeBody>,
) -> Result<axum::Json<Value>> {
    let new_room = state.services.rooms.upgrade(&room_id, &auth.requester.user_id, &body.new_version).await?;
    Ok(axum::Json(json!({ "replacement_room": new_room })))
}

#[derive(Deserialize)]
struct HierarchyQuery {
    from: Option<String>,
    limit: Option<usize>,
    max_depth: Option<usize>,
    suggested_only: Option<bool>,
}

async fn hierarchy(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(query): Query<HierarchyQuery>,
) -> Result<axum::Json<Value>> {
    let request = HierarchyRequest {
        from: query.from.as_deref(),
        limit: query.limit.unwrap_or(50),
        max_depth: query.max_depth.unwrap_or(10).min(10),
        suggested_only: query.suggested_only.unwrap_or(false),
    };
    Ok(axum::Json(state.services.rooms.hierarchy(&room_id, &auth.requester.user_id, request).await?))
}

async fn create_room(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateRoomRequest>,
) -> Result<axum::Json<Value>> {
    let room_id = state.services.rooms.create_room(&auth.requester.user_id, body).await?;
    Ok(axum::Json(json!({ "room_id": room_id })))
}

async fn joined_rooms(State(state): State<AppState>, auth: Auth) -> Result<axum::Json<Value>> {
    let rooms = state.services.rooms.joined_rooms(&auth.requester.user_id).await?;
    Ok(axum::Json(json!({ "joined_rooms": rooms })))
}

#[derive(Deserialize, Default)]
struct ReasonBody {
    reason: Option<String>,
}

async fn join_by_id_or_alias(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id_or_alias): Path<String>,
    Json(body): Json<ReasonBody>,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    let room_id = rooms.resolve_room(&room_id_or_alias).await?;
    let user = &auth.requester.user_id;
    rooms.set_membership(&room_id, user, user, "join", body.reason.as_deref(), json!({})).await?;
    Ok(axum::Json(json!({ "room_id": room_id })))
}

async fn join_room(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Json(body): Json<ReasonBody>,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    let room_id = rooms.resolve_room(&room_id).await?;
    let user = &auth.requester.user_id;
    rooms.set_membership(&room_id, user, user, "join", body.reason.as_deref(), json!({})).await?;
    Ok(axum::Json(json!({ "room_id": room_id })))
}

async fn knock(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id_or_alias): Path<String>,
    Json(body): Json<ReasonBody>,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    let room_id = rooms.resolve_room(&room_id_or_alias).await?;
    let user = &auth.requester.user_id;
    rooms.set_membership(&room_id, user, user, "knock", body.reason.as_deref(), json!({})).await?;
    Ok(axum::Json(json!({ "room_id": room_id })))
}

#[derive(Deserialize)]
struct TargetBody {
    user_id: String,
    reason: Option<String>,
}

/// Invite, kick, ban and unban: the sender changes another user's membership.
async fn change_other(state: &AppState, auth: &Auth, room_id: &str, body: &TargetBody, membership: &str) -> Result<()> {
    let rooms = &state.services.rooms;
    rooms.room_version(room_id).await.map_err(|_| Error::forbidden("Unknown room"))?;
    rooms.require_joined(room_id, &auth.requester.user_id).await?;
    if membership == "leave" {
        // Kicking needs the target to be in (or invited to) the room; unban the target to be banned.
        let current = rooms.membership(room_id, &body.user_id).await?;
        if current.is_none() {
            return Err(Error::forbidden("The user is not in the room"));
        }
    }
    rooms
        .set_membership(room_id, &auth.requester.user_id, &body.user_id, membership, body.reason.as_deref(), json!({}))
        .await?;
    Ok(())
}

async fn invite(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Json(body): Json<TargetBody>,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    if rooms.membership(&room_id, &body.user_id).await?.as_deref() == Some("join") {
        return Err(Error::forbidden("The user is already in the room"));
    }
    change_other(&state, &auth, &room_id, &body, "invite").await?;
    Ok(axum::Json(json!({})))
}

async fn kick(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Json(body): Json<TargetBody>,
) -> Result<axum::Json<Value>> {
    change_other(&state, &auth, &room_id, &body, "leave").await?;
    Ok(axum::Json(json!({})))
}

async fn ban(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Json(body): Json<TargetBody>,
) -> Result<axum::Json<Value>> {
    change_other(&state, &auth, &room_id, &body, "ban").await?;
    Ok(axum::Json(json!({})))
}

async fn unban(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Json(body): Json<TargetBody>,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    if rooms.membership(&room_id, &body.user_id).await?.as_deref() != Some("ban") {
        return Err(Error::forbidden("The user is not banned"));
    }
    change_other(&state, &auth, &room_id, &body, "leave").await?;
    Ok(axum::Json(json!({})))
}

async fn leave(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Json(body): Json<ReasonBody>,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    rooms.room_version(&room_id).await?;
    let user = &auth.requester.user_id;
    match rooms.membership(&room_id, user).await?.as_deref() {
        Some("join" | "invite" | "knock") => {
            rooms.set_membership(&room_id, user, user, "leave", body.reason.as_deref(), json!({})).await?;
        }
        // Leaving a room one already left is a no-op.
        Some("leave") => {}
        _ => return Err(Error::forbidden("You are not in this room")),
    }
    Ok(axum::Json(json!({})))
}

async fn forget(State(state): State<AppState>, auth: Auth, Path(room_id): Path<String>) -> Result<axum::Json<Value>> {
    state.services.rooms.forget(&room_id, &auth.requester.user_id).await?;
    Ok(axum::Json(json!({})))
}

async fn send(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_type, txn_id)): Path<(String, String, String)>,
    Json(content): Json<Value>,
) -> Result<axum::Json<Value>> {
    if is_state_only(&event_type) {
        return Err(Error::bad_json(format!("{event_type} is a state event; use the state endpoint")));
    }
    let scope = format!("send/{room_id}/{event_type}");
    let origin = Origin {
        sender: &auth.requester.user_id,
        txn: Some((auth.requester.device_id.as_str(), scope.as_str(), txn_id.as_str())),
    };
    let rooms = &state.services.rooms;
    let event_id = if event_type == "m.room.redaction" {
        // A redaction sent as an event redacts like PUT /redact does.
        let target = content
            .get("redacts")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("m.room.redaction content needs redacts"))?
            .to_owned();
        rooms.redact(&room_id, &origin, &target, content).await?
    } else {
        rooms.send(&room_id, &origin, EventDraft::message(&event_type, content)).await?
    };
    // Sending is activity: it resets the idle timer.
    state.services.presence.active(&auth.requester.user_id).await?;
    Ok(axum::Json(json!({ "event_id": event_id })))
}

/// Types whose meaning comes from being state; sending them as messages confuses clients.
fn is_state_only(event_type: &str) -> bool {
    matches!(event_type, "m.room.create" | "m.room.member" | "m.room.power_levels" | "m.room.join_rules")
}

async fn put_state(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_type, state_key)): Path<(String, String, String)>,
    Json(content): Json<Value>,
) -> Result<axum::Json<Value>> {
    put_state_inner(&state, &auth, &room_id, &event_type, &state_key, content).await
}

async fn put_state_empty_key(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_type)): Path<(String, String)>,
    Json(content): Json<Value>,
) -> Result<axum::Json<Value>> {
    put_state_inner(&state, &auth, &room_id, &event_type, "", content).await
}

async fn put_state_inner(
    state: &AppState,
    auth: &Auth,
    room_id: &str,
    event_type: &str,
    state_key: &str,
    content: Value,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    let user = &auth.requester.user_id;
    if event_type == "m.room.member" {
        // Membership goes through the membership rules (profile, restricted joins).
        let membership = content
            .get("membership")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("m.room.member content needs a membership"))?;
        let event_id = rooms.set_membership(room_id, user, state_key, membership, None, content.clone()).await?;
        return Ok(axum::Json(json!({ "event_id": event_id })));
    }
    if event_type == "m.room.create" {
        return Err(Error::forbidden("The create event cannot be replaced"));
    }
    let origin = Origin { sender: user, txn: None };
    let event_id = rooms.send(room_id, &origin, EventDraft::state(event_type, state_key, content)).await?;
    Ok(axum::Json(json!({ "event_id": event_id })))
}

async fn redact(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_id, txn_id)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Result<axum::Json<Value>> {
    if body.get("reason").is_some_and(|r| !r.is_string()) {
        return Err(Error::bad_json("reason must be a string"));
    }
    let scope = format!("redact/{room_id}/{event_id}");
    let origin = Origin {
        sender: &auth.requester.user_id,
        txn: Some((auth.requester.device_id.as_str(), scope.as_str(), txn_id.as_str())),
    };
    let redaction_id = state.services.rooms.redact(&room_id, &origin, &event_id, body).await?;
    Ok(axum::Json(json!({ "event_id": redaction_id })))
}

async fn get_event(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    let mut event = [rooms.event_for_user(&room_id, &event_id, &auth.requester.user_id).await?];
    rooms.add_transaction_ids(&mut event, &auth.requester.user_id, &auth.requester.device_id).await?;
    let [event] = event;
    Ok(axum::Json(event))
}

async fn get_state(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> Result<axum::Json<Value>> {
    Ok(axum::Json(Value::Array(state.services.rooms.state_for_user(&room_id, &auth.requester.user_id).await?)))
}

#[derive(Deserialize)]
struct StateQuery {
    format: Option<String>,
}

impl StateQuery {
    fn whole_event(&self) -> Result<bool> {
        match self.format.as_deref() {
            None | Some("content") => Ok(false),
            Some("event") => Ok(true),
            Some(_) => Err(Error::invalid_param("format must be \"content\" or \"event\"")),
        }
    }
}

async fn get_state_event(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_type, state_key)): Path<(String, String, String)>,
    Query(query): Query<StateQuery>,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    let user = &auth.requester.user_id;
    Ok(axum::Json(rooms.state_event_for_user(&room_id, user, &event_type, &state_key, query.whole_event()?).await?))
}

async fn get_state_event_empty_key(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_type)): Path<(String, String)>,
    Query(query): Query<StateQuery>,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    let user = &auth.requester.user_id;
    Ok(axum::Json(rooms.state_event_for_user(&room_id, user, &event_type, "", query.whole_event()?).await?))
}

#[derive(Deserialize)]
struct MembersQuery {
    at: Option<String>,
    membership: Option<String>,
    not_membership: Option<String>,
}

async fn members(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Result<axum::Json<Value>> {
    let chunk = state
        .services
        .rooms
        .members_for_user(
            &room_id,
            &auth.requester.user_id,
            query.membership.as_deref(),
            query.not_membership.as_deref(),
            query.at.as_deref(),
        )
        .await?;
    Ok(axum::Json(json!({ "chunk": chunk })))
}

async fn joined_members(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> Result<axum::Json<Value>> {
    Ok(axum::Json(state.services.rooms.joined_members(&room_id, &auth.requester.user_id).await?))
}

#[derive(Deserialize)]
struct MessagesQuery {
    from: Option<String>,
    to: Option<String>,
    dir: String,
    limit: Option<usize>,
    filter: Option<String>,
}

async fn messages(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(query): Query<MessagesQuery>,
) -> Result<axum::Json<Value>> {
    let backward = match query.dir.as_str() {
        "b" => true,
        "f" => false,
        _ => return Err(Error::invalid_param("dir must be \"b\" or \"f\"")),
    };
    let filter = match query.filter.as_deref() {
        Some(text) => {
            Some(serde_json::from_str::<Value>(text).map_err(|_| Error::bad_json("filter is not valid JSON"))?)
        }
        None => None,
    };
    let request = MessagesRequest { from: query.from, to: query.to, backward, limit: query.limit, filter };
    let rooms = &state.services.rooms;
    let mut response = rooms.messages(&room_id, &auth.requester.user_id, request).await?;
    rooms.add_transaction_ids(&mut response.chunk, &auth.requester.user_id, &auth.requester.device_id).await?;
    let mut body = json!({ "chunk": response.chunk, "start": response.start });
    if let Some(end) = response.end {
        body["end"] = json!(end);
    }
    if !response.state.is_empty() {
        body["state"] = json!(response.state);
    }
    Ok(axum::Json(body))
}
