//! The server's ed25519 signing key: generated on first start, kept in the data
//! directory, and served (self-signed) at /_matrix/key/v2/server.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ruma::CanonicalJsonObject;
use ruma::signatures::Ed25519KeyPair;
use serde_json::{Value, json};

use crate::service::secrets;

/// How long other servers may cache our key response.
const KEY_VALIDITY_MS: i64 = 7 * 24 * 3600 * 1000;

pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Loads `<data_dir>/signing.key` ("ed25519 <version> <base64 PKCS#8>"), creating it if missing.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path)?;
            let mut parts = text.split_whitespace();
            let (Some("ed25519"), Some(version), Some(der)) = (parts.next(), parts.next(), parts.next()) else {
                anyhow::bail!("{}: not an ed25519 signing key file", path.display());
            };
            let der = STANDARD.decode(der).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let pair = Ed25519KeyPair::from_der(&der, version.to_owned())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            return Ok(Self { pair });
        }
        let der = Ed25519KeyPair::generate();
        let version = secrets::random_id(6).to_lowercase();
        let pair = Ed25519KeyPair::from_der(&der, version.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let text = format!("ed25519 {version} {}\n", STANDARD.encode(&*der));
        write_private(path, &text)?;
        tracing::info!(key_id = %format!("ed25519:{version}"), "generated a new signing key");
        Ok(Self { pair })
    }

    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }

    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.pair.public_key())
    }

    /// Adds our signature to a JSON object.
    pub fn sign_json(&self, server_name: &str, object: &mut CanonicalJsonObject) -> Result<(), String> {
        ruma::signatures::sign_json(server_name, &self.pair, object).map_err(|e| e.to_string())
    }

    /// The body of GET /_matrix/key/v2/server.
    pub fn server_keys_response(&self, server_name: &str, now_ms: i64) -> Result<Value, String> {
        let body = json!({
            "server_name": server_name,
            "verify_keys": { self.key_id(): { "key": self.public_key_base64() } },
            "old_verify_keys": {},
            "valid_until_ts": now_ms + KEY_VALIDITY_MS,
        });
        let mut object: CanonicalJsonObject = serde_json::from_value(body).map_err(|e| e.to_string())?;
        self.sign_json(server_name, &mut object)?;
        serde_json::to_value(object).map_err(|e| e.to_string())
    }
}

/// Writes a file readable only by its owner.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_persists_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let key = SigningKey::load_or_generate(&path).unwrap();
        let again = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(key.key_id(), again.key_id());
        assert_eq!(key.public_key_base64(), again.public_key_base64());

        let body = key.server_keys_response("example.org", 0).unwrap();
        let object: CanonicalJsonObject = serde_json::from_value(body).unwrap();
        let mut keys = ruma::signatures::PublicKeyMap::new();
        let mut set = ruma::signatures::PublicKeySet::new();
        set.insert(key.key_id(), ruma::serde::Base64::parse(key.public_key_base64()).unwrap());
        keys.insert("example.org".to_owned(), set);
        ruma::signatures::verify_json(&keys, &object).expect("signature verifies");
    }
}
