//! The client-server API (`/_matrix/client/...`) and `/.well-known/matrix/*`.

mod account;
mod account_data;
mod devices;
mod directory;
mod ephemeral;
mod history;
mod keys;
mod meta;
mod presence;
mod profile;
mod push;
mod register;
mod reports;
mod room_keys;
mod rooms;
mod session;
mod sync;
mod tags;
mod to_device;

pub use register::MAX_PASSWORD_LEN;

use axum::Router;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(meta::routes())
        .merge(register::routes())
        .merge(session::routes())
        .merge(devices::routes())
        .merge(account::routes())
        .merge(profile::routes())
        .merge(account_data::routes())
        .merge(rooms::routes())
        .merge(directory::routes())
        .merge(history::routes())
        .merge(tags::routes())
        .merge(reports::routes())
        .merge(sync::routes())
        .merge(ephemeral::routes())
        .merge(keys::routes())
        .merge(presence::routes())
        .merge(to_device::routes())
        .merge(room_keys::routes())
        .merge(push::routes())
}

/// Only the owner may act on their own user-scoped resources.
fn require_self(requester: &crate::service::auth::Requester, user_id: &str, what: &str) -> crate::error::Result<()> {
    if requester.user_id == user_id {
        Ok(())
    } else {
        Err(crate::error::Error::forbidden(format!("Cannot {what} for other users")))
    }
}
