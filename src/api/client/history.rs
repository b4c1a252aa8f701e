//! Reading around events: /context, /relations, /threads, /timestamp_to_event.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::extract::{Auth, Query};
use crate::error::{Error, Result};
use crate::service::rooms::{Page, RelationsRequest, RoomEventsCriteria};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/rooms/{room_id}/context/{event_id}", get(context))
        .route("/_matrix/client/v1/rooms/{room_id}/relations/{event_id}", get(relations))
        .route("/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}", get(relations_of_type))
        .route(
            "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}",
            get(relations_of_type_and_event_type),
        )
        .route("/_matrix/client/v1/rooms/{room_id}/threads", get(threads))
        .route("/_matrix/client/v1/rooms/{room_id}/timestamp_to_event", get(timestamp_to_event))
        .route("/_matrix/client/v3/search", axum::routing::post(search))
}

#[derive(Deserialize)]
struct SearchBody {
    search_categories: SearchCategories,
}

#[derive(Deserialize)]
struct SearchCategories {
    room_events: Option<RoomEventsCriteria>,
}

#[derive(Deserialize)]
struct SearchQuery {
    next_batch: Option<String>,
}

async fn search(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<SearchQuery>,
    crate::api::extract::Json(body): crate::api::extract::Json<SearchBody>,
) -> Result<axum::Json<Value>> {
    let Some(criteria) = body.search_categories.room_events else {
        return Ok(axum::Json(json!({ "search_categories": {} })));
    };
    let rooms = &state.services.rooms;
    Ok(axum::Json(rooms.search(&auth.requester.user_id, criteria, query.next_batch.as_deref()).await?))
}

#[derive(Deserialize)]
struct ContextQuery {
    limit: Option<usize>,
    filter: Option<String>,
}

fn parse_filter(filter: Option<&str>) -> Result<Option<Value>> {
    filter.map(|f| serde_json::from_str(f).map_err(|_| Error::bad_json("filter is not valid JSON"))).transpose()
}

async fn context(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_id)): Path<(String, String)>,
    Query(query): Query<ContextQuery>,
) -> Result<axum::Json<Value>> {
    let filter = parse_filter(query.filter.as_deref())?;
    let rooms = &state.services.rooms;
    let body = rooms.context(&room_id, &event_id, &auth.requester.user_id, query.limit.unwrap_or(10), filter).await?;
    Ok(axum::Json(body))
}

#[derive(Deserialize)]
struct RelationsQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    dir: Option<String>,
    recurse: Option<bool>,
}

fn page_json(page: Page) -> Value {
    let mut body = json!({ "chunk": page.chunk });
    if let Some(next) = page.next_batch {
        body["next_batch"] = json!(next);
    }
    if let Some(depth) = page.recursion_depth {
        body["recursion_depth"] = json!(depth);
    }
    body
}

async fn relations_inner(
    state: &AppState,
    auth: &Auth,
    room_id: &str,
    event_id: &str,
    rel_type: Option<&str>,
    event_type: Option<&str>,
    query: RelationsQuery,
) -> Result<axum::Json<Value>> {
    let backward = match query.dir.as_deref() {
        None | Some("b") => true,
        Some("f") => false,
        Some(_) => return Err(Error::invalid_param("dir must be \"b\" or \"f\"")),
    };
    let request = RelationsRequest {
        rel_type,
        event_type,
        from: query.from.as_deref(),
        to: query.to.as_deref(),
        backward,
        limit: query.limit.unwrap_or(50),
        recurse: query.recurse.unwrap_or(false),
    };
    let page = state.services.rooms.relations(room_id, event_id, &auth.requester.user_id, request).await?;
    Ok(axum::Json(page_json(page)))
}

async fn relations(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_id)): Path<(String, String)>,
    Query(query): Query<RelationsQuery>,
) -> Result<axum::Json<Value>> {
    relations_inner(&state, &auth, &room_id, &event_id, None, None, query).await
}

async fn relations_of_type(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_id, rel_type)): Path<(String, String, String)>,
    Query(query): Query<RelationsQuery>,
) -> Result<axum::Json<Value>> {
    relations_inner(&state, &auth, &room_id, &event_id, Some(&rel_type), None, query).await
}

async fn relations_of_type_and_event_type(
    State(state): State<AppState>,
    auth: Auth,
    Path((room_id, event_id, rel_type, event_type)): Path<(String, String, String, String)>,
    Query(query): Query<RelationsQuery>,
) -> Result<axum::Json<Value>> {
    relations_inner(&state, &auth, &room_id, &event_id, Some(&rel_type), Some(&event_type), query).await
}

#[derive(Deserialize)]
struct ThreadsQuery {
    include: Option<String>,
    from: Option<String>,
    limit: Option<usize>,
}

async fn threads(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(query): Query<ThreadsQuery>,
) -> Result<axum::Json<Value>> {
    let participated = match query.include.as_deref() {
        None | Some("all") => false,
        Some("participated") => true,
        Some(_) => return Err(Error::invalid_param("include must be \"all\" or \"participated\"")),
    };
    let rooms = &state.services.rooms;
    let page = rooms
        .threads(&room_id, &auth.requester.user_id, participated, query.from.as_deref(), query.limit.unwrap_or(50))
        .await?;
    Ok(axum::Json(page_json(page)))
}

#[derive(Deserialize)]
struct TimestampQuery {
    ts: i64,
    dir: String,
}

async fn timestamp_to_event(
    State(state): State<AppState>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(query): Query<TimestampQuery>,
) -> Result<axum::Json<Value>> {
    let backward = match query.dir.as_str() {
        "b" => true,
        "f" => false,
        _ => return Err(Error::invalid_param("dir must be \"b\" or \"f\"")),
    };
    let rooms = &state.services.rooms;
    Ok(axum::Json(rooms.event_at_timestamp(&room_id, &auth.requester.user_id, query.ts, backward).await?))
}
