//! Accounts: registration, sessions (login, refresh, logout), passwords,
//! deactivation and profiles. Used by the client API and by the CLI alike.

use std::sync::Arc;

use serde_json::Value;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::service::auth::{Authenticator, Requester};
use crate::service::e2ee::E2ee;
use crate::service::{now_ms, password, secrets};
use crate::storage::{NewSession, NewUser, Storage, UserRecord};

/// The longest user id the spec allows, in bytes.
const MAX_USER_ID_LEN: usize = 255;

/// Tokens handed to a client when a session starts.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<u64>,
}

/// What starting a session needs besides the user.
#[derive(Debug, Default, Clone)]
pub struct SessionRequest {
    pub device_id: Option<String>,
    pub display_name: Option<String>,
    pub want_refresh_token: bool,
}

pub struct Accounts {
    config: Arc<Config>,
    storage: Arc<dyn Storage>,
    auth: Arc<Authenticator>,
    /// Told of every device added or removed (the device-list stream).
    e2ee: Arc<E2ee>,
}

impl Accounts {
    pub fn new(config: Arc<Config>, storage: Arc<dyn Storage>, auth: Arc<Authenticator>, e2ee: Arc<E2ee>) -> Self {
        Self { config, storage, auth, e2ee }
    }

    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.config.server_name)
    }

    /// Checks a requested localpart against the spec's grammar for new users.
    pub fn validate_localpart(&self, localpart: &str) -> Result<String> {
        let invalid = |message: &str| Error::new(axum::http::StatusCode::BAD_REQUEST, "M_INVALID_USERNAME", message);
        if localpart.is_empty() {
            return Err(invalid("The user name must not be empty"));
        }
        if !localpart.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'))
        {
            return Err(invalid("User names may contain only a-z, 0-9, '.', '_', '=', '-', '/' and '+'"));
        }
        let user_id = self.user_id(localpart);
        if user_id.len() > MAX_USER_ID_LEN {
            return Err(invalid("The user name is too long"));
        }
        Ok(user_id)
    }

    /// Accepts a localpart or a full user id of this server, as login does.
    pub fn resolve_user_id(&self, user: &str) -> Option<String> {
        if let Some(rest) = user.strip_prefix('@') {
            let (localpart, server) = rest.split_once(':')?;
            (server == self.config.server_name).then(|| self.user_id(&localpart.to_lowercase()))
        } else {
            Some(self.user_id(&user.to_lowercase()))
        }
    }

    /// Whether the localpart is free (never used, deactivated accounts included).
    pub async fn is_available(&self, localpart: &str) -> Result<()> {
        let user_id = self.validate_localpart(localpart)?;
        if self.storage.get_user(&user_id).await?.is_some() {
            return Err(user_in_use());
        }
        Ok(())
    }

    /// Creates an account. A missing password makes an account that cannot log in with one.
    pub async fn create(
        &self,
        localpart: &str,
        password: Option<String>,
        is_admin: bool,
        is_guest: bool,
    ) -> Result<String> {
        let user_id = self.validate_localpart(localpart)?;
        let hash = match password {
            Some(p) => Some(password::hash(p).await?),
            None => None,
        };
        let created = self
            .storage
            .create_user(&NewUser {
                user_id: &user_id,
                password_hash: hash.as_deref(),
                is_admin,
                is_guest,
                displayname: Some(localpart),
                created_ts: now_ms(),
            })
            .await?;
        if !created {
            return Err(user_in_use());
        }
        tracing::info!(%user_id, is_admin, is_guest, "account created");
        Ok(user_id)
    }

    /// Creates a guest account with a generated numeric localpart.
    pub async fn create_guest(&self) -> Result<String> {
        for _ in 0..8 {
            let localpart = format!("{}", rand::random::<u64>() % 10_000_000_000);
            match self.create(&localpart, None, false, true).await {
                Err(e) if e.errcode == "M_USER_IN_USE" => continue,
                other => return other,
            }
        }
        Err(Error::internal("could not find a free guest user id"))
    }

    /// Starts a session on a (new or existing) device of the user.
    pub async fn start_session(&self, user_id: &str, request: SessionRequest) -> Result<SessionTokens> {
        let new_device = match &request.device_id {
            Some(id) => self.storage.get_device(user_id, id).await?.is_none(),
            None => true,
        };
        let device_id = request.device_id.unwrap_or_else(|| secrets::random_id(10));
        let access_token = secrets::new_token("syt");
        let now = now_ms();
        let (refresh_token, expires_in_ms) = if request.want_refresh_token {
            (Some(secrets::new_token("syr")), Some(self.config.auth.access_token_lifetime_ms))
        } else {
            (None, None)
        };
        let access_hash = secrets::hash_token(&access_token);
        let refresh_hash = refresh_token.as_deref().map(secrets::hash_token);
        let revoked = self
            .storage
            .start_session(
                &NewSession {
                    user_id,
                    device_id: &device_id,
                    access_token_hash: &access_hash,
                    refresh_token_hash: refresh_hash.as_deref(),
                    expires_ts: expires_in_ms.map(|ms| now + ms as i64),
                    now,
                },
                request.display_name.as_deref(),
            )
            .await?;
        self.auth.forget(&revoked).await;
        if new_device {
            self.e2ee.device_list_changed(user_id).await?;
        }
        Ok(SessionTokens { user_id: user_id.to_owned(), device_id, access_token, refresh_token, expires_in_ms })
    }

    /// Checks a user's password; `None` when the user is unknown, deactivated or the password wrong.
    pub async fn check_password(&self, user_id: &str, password: &str) -> Result<Option<UserRecord>> {
        let user = self.storage.get_user(user_id).await?;
        let stored = user.as_ref().filter(|u| !u.deactivated).and_then(|u| u.password_hash.clone());
        let ok = password::verify(password.to_owned(), stored).await?;
        Ok(if ok { user } else { None })
    }

    /// m.login.password: returns the user id when the password is right.
    pub async fn login_with_password(&self, user: &str, password: &str) -> Result<String> {
        let forbidden = || Error::forbidden("Invalid username or password");
        let Some(user_id) = self.resolve_user_id(user) else {
            return Err(forbidden());
        };
        match self.check_password(&user_id, password).await? {
            Some(user) => Ok(user.user_id),
            None => {
                if self.storage.get_user(&user_id).await?.is_some_and(|u| u.deactivated) {
                    return Err(Error::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "M_USER_DEACTIVATED",
                        "This account has been deactivated",
                    ));
                }
                Err(forbidden())
            }
        }
    }

    /// Exchanges a refresh token for a new access and refresh token on the same device.
    pub async fn refresh(&self, refresh_token: &str) -> Result<SessionTokens> {
        let hash = secrets::hash_token(refresh_token);
        let Some((user_id, device_id)) = self.storage.take_refresh_token(&hash).await? else {
            return Err(Error::unknown_token(false));
        };
        self.start_session(
            &user_id,
            SessionRequest { device_id: Some(device_id), display_name: None, want_refresh_token: true },
        )
        .await
    }

    /// Logs out the token's session; the spec deletes its device with it.
    pub async fn logout(&self, requester: &Requester) -> Result<()> {
        self.delete_devices(&requester.user_id, std::slice::from_ref(&requester.device_id)).await
    }

    /// Logs out every session of the user and deletes all their devices.
    pub async fn logout_all(&self, user_id: &str) -> Result<()> {
        let devices: Vec<String> = self.storage.list_devices(user_id).await?.into_iter().map(|d| d.device_id).collect();
        self.delete_devices(user_id, &devices).await?;
        // Sessions whose device row is gone (none are expected) are revoked too.
        self.revoke_sessions_except(user_id, None).await
    }

    /// Revokes the sessions of every device of the user except `keep_device`, keeping the devices.
    pub async fn revoke_sessions_except(&self, user_id: &str, keep_device: Option<&str>) -> Result<()> {
        let revoked = self.storage.revoke_sessions_except(user_id, keep_device).await?;
        self.auth.forget(&revoked).await;
        Ok(())
    }

    pub async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> Result<()> {
        let revoked = self.storage.delete_devices(user_id, device_ids).await;
        for device_id in device_ids {
            // A device created again under the same id starts without keys.
            self.e2ee.keys_changed(user_id, device_id);
        }
        let revoked = revoked?;
        self.auth.forget(&revoked).await;
        if !device_ids.is_empty() {
            self.e2ee.device_list_changed(user_id).await?;
        }
        Ok(())
    }

    pub async fn set_password(&self, user_id: &str, new_password: String) -> Result<()> {
        let hash = password::hash(new_password).await?;
        if !self.storage.set_password_hash(user_id, &hash).await? {
            return Err(Error::not_found("No such user"));
        }
        Ok(())
    }

    pub async fn deactivate(&self, user_id: &str) -> Result<()> {
        if self.storage.get_user(user_id).await?.is_none() {
            return Err(Error::not_found("No such user"));
        }
        let revoked = self.storage.deactivate_user(user_id).await?;
        self.auth.forget(&revoked).await;
        self.e2ee.device_list_changed(user_id).await?;
        tracing::info!(%user_id, "account deactivated");
        Ok(())
    }

    /// A user of this server that exists and is not deactivated.
    pub async fn active_user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        Ok(self.storage.get_user(user_id).await?.filter(|u| !u.deactivated))
    }

    /// The profile fields, or 404 M_NOT_FOUND for an unknown user.
    pub async fn profile(&self, user_id: &str) -> Result<(Option<String>, Option<String>)> {
        match self.storage.get_user(user_id).await? {
            Some(user) => Ok((user.displayname, user.avatar_url)),
            None => Err(Error::not_found("Profile not found")),
        }
    }

    pub async fn set_profile_field(&self, user_id: &str, field: ProfileField, value: Option<&str>) -> Result<()> {
        match field {
            ProfileField::DisplayName => self.storage.set_displayname(user_id, value).await?,
            ProfileField::AvatarUrl => self.storage.set_avatar_url(user_id, value).await?,
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    DisplayName,
    AvatarUrl,
}

impl ProfileField {
    pub fn parse(key: &str) -> Option<Self> {
        match key {
            "displayname" => Some(Self::DisplayName),
            "avatar_url" => Some(Self::AvatarUrl),
            _ => None,
        }
    }
}

fn user_in_use() -> Error {
    Error::new(axum::http::StatusCode::BAD_REQUEST, "M_USER_IN_USE", "The user name is already taken")
}

/// Reads the user a login or password stage names: `identifier` (m.id.user) or the legacy `user`.
pub fn identifier_user(body: &Value) -> Option<&str> {
    match body.get("identifier") {
        Some(identifier) => {
            if identifier.get("type").and_then(Value::as_str) != Some("m.id.user") {
                return None;
            }
            identifier.get("user").and_then(Value::as_str)
        }
        None => body.get("user").and_then(Value::as_str),
    }
}
