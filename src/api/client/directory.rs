//! Room aliases (`/directory/room/{alias}`, `/rooms/{id}/aliases`) and the
//! room directory visibility (`/directory/list/room/{id}`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Json, Query};
use crate::error::{Error, Result};
use crate::service::rooms::PublicRoomsRequest;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/directory/room/{alias}", get(get_alias).put(put_alias).delete(delete_alias))
        .route("/_matrix/client/v3/rooms/{room_id}/aliases", get(room_aliases))
        .route("/_matrix/client/v3/directory/list/room/{room_id}", get(get_visibility).put(put_visibility))
        .route("/_matrix/client/v3/publicRooms", get(public_rooms_get).post(public_rooms_post))
}

#[derive(Deserialize)]
struct PublicRoomsQuery {
    limit: Option<usize>,
    since: Option<String>,
    server: Option<String>,
}

fn check_server(state: &AppState, server: Option<&str>) -> Result<()> {
    match server {
        Some(server) if server != state.services.config.server_name => {
            Err(Error::not_found("Directories of other servers cannot be queried yet"))
        }
        _ => Ok(()),
    }
}

async fn public_rooms_get(
    State(state): State<AppState>,
    Query(query): Query<PublicRoomsQuery>,
) -> Result<axum::Json<Value>> {
    check_server(&state, query.server.as_deref())?;
    let request = PublicRoomsRequest { limit: query.limit, since: query.since.as_deref(), search: None };
    Ok(axum::Json(state.services.rooms.public_rooms(request).await?))
}

#[derive(Deserialize)]
struct PublicRoomsBody {
    limit: Option<usize>,
    since: Option<String>,
    filter: Option<PublicRoomsFilter>,
}

#[derive(Deserialize)]
struct PublicRoomsFilter {
    generic_search_term: Option<String>,
}

async fn public_rooms_post(
    State(state): State<AppState>,
    _auth: Auth,
    Query(query): Query<PublicRoomsQuery>,
    Json(body): Json<PublicRoomsBody>,
) -> Result<axum::Json<Value>> {
    check_server(&state, query.server.as_deref())?;
    let search = body.filter.as_ref().and_then(|f| f.generic_search_term.as_deref());
    let request = PublicRoomsRequest { limit: body.limit, since: body.since.as_deref(), search };
    Ok(axum::Json(state.services.rooms.public_rooms(request).await?))
}

/// A well-formed alias of this server.
fn local_alias(state: &AppState, alias: &str) -> Result<()> {
    let parsed = ruma::RoomAliasId::parse(alias).map_err(|_| Error::invalid_param("Invalid room alias"))?;
    if parsed.server_name().as_str() != state.services.config.server_name {
        return Err(Error::invalid_param("Aliases of other servers cannot be managed here"));
    }
    Ok(())
}

async fn get_alias(State(state): State<AppState>, Path(alias): Path<String>) -> Result<axum::Json<Value>> {
    ruma::RoomAliasId::parse(&alias).map_err(|_| Error::invalid_param("Invalid room alias"))?;
    let (room_id, _) =
        state.services.storage.get_alias(&alias).await?.ok_or_else(|| Error::not_found("Room alias not found"))?;
    Ok(axum::Json(json!({ "room_id": room_id, "servers": [state.services.config.server_name] })))
}

#[derive(Deserialize)]
struct PutAliasBody {
    room_id: String,
}

async fn put_alias(
    State(state): State<AppState>,
    auth: Auth,
    Path(alias): Path<String>,
    Json(body): Json<PutAliasBody>,
) -> Result<axum::Json<Value>> {
    local_alias(&state, &alias)?;
    let rooms = &state.services.rooms;
    rooms.room_version(&body.room_id).await?;
    rooms.require_joined(&body.room_id, &auth.requester.user_id).await?;
    if !state.services.storage.create_alias(&alias, &body.room_id, &auth.requester.user_id).await? {
        return Err(Error::new(StatusCode::CONFLICT, "M_UNKNOWN", "Room alias already exists"));
    }
    Ok(axum::Json(json!({})))
}

async fn delete_alias(
    State(state): State<AppState>,
    auth: Auth,
    Path(alias): Path<String>,
) -> Result<axum::Json<Value>> {
    local_alias(&state, &alias)?;
    let storage = &state.services.storage;
    let (_, creator) = storage.get_alias(&alias).await?.ok_or_else(|| Error::not_found("Room alias not found"))?;
    let is_admin = storage.get_user(&auth.requester.user_id).await?.is_some_and(|u| u.is_admin);
    if creator != auth.requester.user_id && !is_admin {
        return Err(Error::forbidden("Only the alias' creator or a server admin can delete it"));
    }
    storage.delete_alias(&alias).await?;
    Ok(axum::Json(json!({})))
}

async fn room_aliases(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> Result<axum::Json<Value>> {
    let rooms = &state.services.rooms;
    rooms.room_version(&room_id).await.map_err(|_| Error::forbidden("Unknown room"))?;
    rooms.state_for_user(&room_id, &auth.requester.user_id).await?;
    let aliases = state.services.storage.room_aliases(&room_id).await?;
    Ok(axum::Json(json!({ "aliases": aliases })))
}

async fn get_visibility(State(state): State<AppState>, Path(room_id): Path<String>) -> Result<axum::Json<Value>> {
    let room = state.services.storage.get_room(&room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
    Ok(axum::Json(json!({ "visibility": if room.is_public { "public" } else { "private" } })))
}

#[derive(Deserialize)]
struct VisibilityBody {
    visibility: String,
}

async fn put_visibility(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Json(body): Json<VisibilityBody>,
) -> Result<axum::Json<Value>> {
    let public = match body.visibility.as_str() {
        "public" => true,
        "private" => false,
        _ => return Err(Error::invalid_param("visibility must be \"public\" or \"private\"")),
    };
    let rooms = &state.services.rooms;
    rooms.room_version(&room_id).await?;
    rooms.require_joined(&room_id, &auth.requester.user_id).await?;
    state.services.storage.set_room_public(&room_id, public).await?;
    Ok(axum::Json(json!({})))
}
