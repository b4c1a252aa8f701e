//! Request extractors that fail with Matrix errors: JSON bodies, access tokens, client IPs.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::AppState;
use crate::error::Error;
use crate::service::auth::Requester;

/// A JSON request body. Not JSON → 400 M_NOT_JSON; wrong shape → 400 M_BAD_JSON;
/// over the size limit → 413 M_TOO_LARGE. An empty body reads as `{}`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::too_large("Request body too large")
            } else {
                Error::not_json(format!("Could not read the request body: {rejection}"))
            }
        })?;
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|e| Error::not_json(format!("Body is not valid JSON: {e}")))?
        };
        if !value.is_object() {
            return Err(Error::bad_json("The request body must be a JSON object"));
        }
        let parsed = serde_path_to_error::deserialize(value).map_err(|e| Error::bad_json(e.to_string()))?;
        Ok(Self(parsed))
    }
}

/// Query parameters. Missing → 400 M_MISSING_PARAM; malformed → 400 M_INVALID_PARAM.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or_default();
        let parsed = serde_html_form::from_str(query).map_err(|e| {
            let message = e.to_string();
            if message.starts_with("missing field") {
                Error::missing_param(format!("Query parameter {message}"))
            } else {
                Error::invalid_param(format!("Invalid query parameter: {message}"))
            }
        })?;
        Ok(Self(parsed))
    }
}

/// The access token of a request: `Authorization: Bearer`, or the deprecated `access_token` query parameter.
pub fn access_token(parts: &Parts) -> Option<String> {
    if let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        return header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")).map(|t| t.trim().to_owned());
    }
    let query = parts.uri.query()?;
    url_query_value(query, "access_token")
}

fn url_query_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// The client's address, as seen on the connection.
pub fn client_ip(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// The endpoints a guest account may use (spec: "Guest access"), by route suffix.
const GUEST_ROUTES: &[&str] = &[
    "/account/whoami",
    "/capabilities",
    "/logout",
    "/sync",
    "/events",
    "/pushrules/",
    "/profile/{user_id}/{key}",
    "/devices",
    "/devices/{device_id}",
    "/join/{room_id_or_alias}",
    "/rooms/{room_id}/join",
    "/rooms/{room_id}/leave",
    "/rooms/{room_id}/send/{event_type}/{txn_id}",
    "/rooms/{room_id}/state",
    "/rooms/{room_id}/state/{event_type}",
    "/rooms/{room_id}/state/{event_type}/{state_key}",
    "/rooms/{room_id}/event/{event_id}",
    "/rooms/{room_id}/context/{event_id}",
    "/rooms/{room_id}/messages",
    "/rooms/{room_id}/members",
    "/rooms/{room_id}/typing/{user_id}",
    "/rooms/{room_id}/receipt/{receipt_type}/{event_id}",
    "/rooms/{room_id}/read_markers",
    "/rooms/{room_id}/initialSync",
    "/sendToDevice/{event_type}/{txn_id}",
    "/keys/upload",
    "/keys/query",
    "/keys/claim",
    "/keys/changes",
    "/user/{user_id}/account_data/{data_type}",
    "/user/{user_id}/rooms/{room_id}/account_data/{data_type}",
    "/user/{user_id}/rooms/{room_id}/tags",
    "/user/{user_id}/rooms/{room_id}/tags/{tag}",
    "/user/{user_id}/filter",
    "/user/{user_id}/filter/{filter_id}",
    "/presence/{user_id}/status",
    "/voip/turnServer",
    "/media/config",
    "/media/download/{server_name}/{media_id}",
    "/media/download/{server_name}/{media_id}/{file_name}",
    "/media/thumbnail/{server_name}/{media_id}",
];

/// An authenticated request: who made it.
pub struct Auth {
    pub requester: Requester,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = access_token(parts).ok_or_else(Error::missing_token)?;
        // Boxed: a handler's future is as large as its largest step, and a
        // long-poll holds that space for its whole wait.
        let requester = Box::pin(state.services.auth.authenticate(&token, client_ip(parts).as_deref())).await?;
        if requester.is_guest {
            let route = parts.extensions.get::<axum::extract::MatchedPath>().map(|p| p.as_str()).unwrap_or_default();
            if !GUEST_ROUTES.iter().any(|allowed| route.ends_with(allowed)) {
                return Err(Error::new(
                    StatusCode::FORBIDDEN,
                    "M_GUEST_ACCESS_FORBIDDEN",
                    "Guest accounts cannot use this endpoint",
                ));
            }
        }
        Ok(Self { requester })
    }
}

/// The client's IP address for rate limiting ("unknown" when not known).
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(Self(client_ip(parts).unwrap_or_else(|| "unknown".to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_token() {
        assert_eq!(url_query_value("a=1&access_token=abc%2Bd", "access_token").as_deref(), Some("abc+d"));
        assert_eq!(url_query_value("a=1", "access_token"), None);
    }
}
