//! Who may register: the registration mode, registration tokens (the configured
//! one, and the one-time first-start token that makes its user an admin), and
//! Synapse-compatible shared-secret registration.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use moka::future::Cache;
use secrecy::ExposeSecret;
use sha1::Sha1;

use crate::config::{Config, RegistrationMode};
use crate::error::{Error, Result};
use crate::service::{now_ms, secrets};
use crate::storage::{NewRegistrationToken, Storage};

pub struct Registration {
    config: Arc<Config>,
    storage: Arc<dyn Storage>,
    /// Nonces handed out by GET /_synapse/admin/v1/register, each usable once.
    nonces: Cache<String, ()>,
}

impl Registration {
    pub fn new(config: Arc<Config>, storage: Arc<dyn Storage>) -> Self {
        Self {
            config,
            storage,
            nonces: Cache::builder().max_capacity(10_000).time_to_live(Duration::from_secs(60)).build(),
        }
    }

    pub fn mode(&self) -> RegistrationMode {
        self.config.registration.mode
    }

    /// On a server with no accounts in token mode, makes a new one-time token
    /// that grants admin, replacing any unused one from an earlier start, and
    /// returns it for the log.
    pub async fn bootstrap_token(&self) -> Result<Option<String>> {
        if self.mode() != RegistrationMode::Token || self.storage.count_users().await? > 0 {
            return Ok(None);
        }
        self.storage.remove_unused_admin_tokens().await?;
        let token = secrets::new_token("kith_reg");
        self.storage
            .add_registration_token(&NewRegistrationToken {
                token_hash: &secrets::hash_token(&token),
                uses_allowed: Some(1),
                expiry_ts: None,
                grants_admin: true,
            })
            .await?;
        Ok(Some(token))
    }

    fn is_configured_token(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.config
            .registration
            .token
            .as_ref()
            .is_some_and(|t| bool::from(t.expose_secret().as_bytes().ct_eq(token.as_bytes())))
    }

    /// GET /register/m.login.registration_token/validity, and the UIA stage.
    pub async fn token_valid(&self, token: &str) -> Result<bool> {
        if self.is_configured_token(token) {
            return Ok(true);
        }
        Ok(self.storage.registration_token_valid(&secrets::hash_token(token), now_ms()).await?)
    }

    /// Uses a token up at the end of a registration. `Some(grants_admin)` when it was still valid.
    pub async fn consume_token(&self, token: &str) -> Result<Option<bool>> {
        if self.is_configured_token(token) {
            return Ok(Some(false));
        }
        Ok(self.storage.use_registration_token(&secrets::hash_token(token), now_ms()).await?)
    }

    fn shared_secret(&self) -> Result<&str> {
        match &self.config.registration.shared_secret {
            Some(secret) => Ok(secret.expose_secret()),
            None => Err(Error::new(
                axum::http::StatusCode::BAD_REQUEST,
                "M_UNKNOWN",
                "Shared secret registration is not enabled",
            )),
        }
    }

    pub async fn new_nonce(&self) -> Result<String> {
        self.shared_secret()?;
        let nonce = secrets::random_id(32);
        self.nonces.insert(nonce.clone(), ()).await;
        Ok(nonce)
    }

    /// Checks the HMAC-SHA1 of `nonce\0user\0password\0admin|notadmin` and uses the nonce up.
    pub async fn check_shared_secret_mac(
        &self,
        nonce: &str,
        username: &str,
        password: &str,
        admin: bool,
        mac_hex: &str,
    ) -> Result<()> {
        let secret = self.shared_secret()?;
        if self.nonces.remove(nonce).await.is_none() {
            return Err(Error::invalid_param("Unrecognised nonce"));
        }
        let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).map_err(Error::internal)?;
        for (i, part) in [nonce, username, password, if admin { "admin" } else { "notadmin" }].iter().enumerate() {
            if i > 0 {
                mac.update(b"\0");
            }
            mac.update(part.as_bytes());
        }
        let given = hex::decode(mac_hex).map_err(|_| Error::forbidden("HMAC incorrect"))?;
        mac.verify_slice(&given).map_err(|_| Error::forbidden("HMAC incorrect"))
    }
}
