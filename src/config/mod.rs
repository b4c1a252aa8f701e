//! Configuration: defaults, then the TOML file, then `KITH_*` environment variables.
//!
//! Loading checks every key on its own so that a bad config is reported with
//! all of its problems at once, not one per restart.

mod load;

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

pub use load::{ConfigError, load};

/// The commented example configuration, printed by `kith --generate-config`.
pub const EXAMPLE: &str = include_str!("example.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server_name: String,
    pub data_dir: PathBuf,
    pub log: String,
    pub default_room_version: String,
    pub listen: Listen,
    pub database: Database,
    pub registration: Registration,
    pub auth: Auth,
    pub rate_limits: RateLimits,
    pub limits: Limits,
    pub well_known: WellKnown,
    pub presence: PresenceConfig,
    pub media: Media,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".into(),
            data_dir: PathBuf::from("./data"),
            log: "info".into(),
            default_room_version: "12".into(),
            listen: Listen::default(),
            database: Database::default(),
            registration: Registration::default(),
            auth: Auth::default(),
            rate_limits: RateLimits::default(),
            limits: Limits::default(),
            well_known: WellKnown::default(),
            presence: PresenceConfig::default(),
            media: Media::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Listen {
    pub client: SocketAddr,
    /// `None` when configured as "" (metrics listener off).
    #[serde(deserialize_with = "load::optional_addr")]
    pub metrics: Option<SocketAddr>,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            client: "127.0.0.1:8008".parse().expect("valid address"),
            metrics: Some("127.0.0.1:9008".parse().expect("valid address")),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Database {
    /// Empty means the SQLite file `<data_dir>/kith.db`.
    pub url: String,
    /// 0: sized to the machine (see `pool_size`).
    pub max_connections: u32,
}

impl Database {
    /// The connection pool's size. By default twice the cores plus two (the
    /// usual sizing of a PostgreSQL pool): the database cannot run more queries
    /// at once than it has cores, and each extra connection keeps its buffers
    /// and up to 256 prepared statements in this process. Measured on 2 cores:
    /// 6 connections instead of 16 sent ~9% more; 4 instead of 16 ended a send
    /// run with 35 MiB less.
    pub fn pool_size(&self) -> u32 {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        2 * crate::cores() + 2
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Token,
    Open,
    Closed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Registration {
    pub mode: RegistrationMode,
    pub token: Option<SecretString>,
    pub shared_secret: Option<SecretString>,
    pub allow_guests: bool,
}

impl Default for Registration {
    fn default() -> Self {
        Self { mode: RegistrationMode::Token, token: None, shared_secret: None, allow_guests: false }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Auth {
    pub access_token_lifetime_ms: u64,
    pub uia_session_timeout_secs: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Self { access_token_lifetime_ms: 3_600_000, uia_session_timeout_secs: 600 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RateLimits {
    pub enabled: bool,
    pub login_per_second: f64,
    pub login_burst: u32,
    pub register_per_second: f64,
    pub register_burst: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { enabled: true, login_per_second: 0.5, login_burst: 5, register_per_second: 0.2, register_burst: 3 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_request_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_request_body_bytes: 1024 * 1024 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PresenceConfig {
    /// Off: no presence is tracked, stored or sent, and it costs nothing.
    pub enabled: bool,
    pub idle_timeout_secs: u64,
    pub offline_timeout_secs: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { enabled: true, idle_timeout_secs: 300, offline_timeout_secs: 30 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WellKnown {
    pub client: String,
    pub server: String,
}

/// The media repository (`[media]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Media {
    /// Largest file a client may upload (413 M_TOO_LARGE above it).
    pub max_upload_bytes: u64,
    /// Bytes of media one user may have stored; 0 = no quota.
    pub user_quota_bytes: u64,
    /// Asynchronous uploads (`/media/v1/create`) one user may have pending at once.
    pub max_pending_uploads: u32,
    /// How long an id from `/media/v1/create` waits for its content.
    pub pending_upload_lifetime_secs: u64,
    /// The longest a download waits for a pending upload (caps `timeout_ms`).
    pub max_download_wait_ms: u64,
    /// The unauthenticated `/_matrix/media/v3/download|thumbnail` paths serve only
    /// media uploaded before this time (ms since the epoch); 0 = they serve nothing.
    pub legacy_download_before_ts: i64,
    /// Memory for small hot files and thumbnails.
    pub memory_cache_bytes: u64,
    /// Files up to this size are kept in the memory cache.
    pub memory_cache_max_file_bytes: u64,
    /// Images with more pixels than this get no thumbnail (decompression bombs).
    pub max_image_pixels: u64,
    /// An animated image up to this size is its own animated thumbnail.
    pub max_animated_original_bytes: u64,
    pub url_preview: UrlPreview,
}

impl Default for Media {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            user_quota_bytes: 0,
            max_pending_uploads: 10,
            pending_upload_lifetime_secs: 24 * 3600,
            max_download_wait_ms: 60_000,
            legacy_download_before_ts: 0,
            memory_cache_bytes: 64 * 1024 * 1024,
            memory_cache_max_file_bytes: 1024 * 1024,
            max_image_pixels: 32_000_000,
            max_animated_original_bytes: 1024 * 1024,
            url_preview: UrlPreview::default(),
        }
    }
}

/// URL previews (`[media.url_preview]`): the server fetches pages its users name.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UrlPreview {
    pub enabled: bool,
    /// Address ranges (CIDR, e.g. "127.0.0.0/8") that may be fetched although they
    /// are private, loopback, link-local or otherwise not public.
    pub allowed_ip_ranges: Vec<String>,
    /// The most bytes read of a page or of its image.
    pub max_bytes: u64,
    pub timeout_secs: u64,
    pub max_redirects: u32,
}

impl Default for UrlPreview {
    fn default() -> Self {
        Self {
            enabled: false,
            allowed_ip_ranges: Vec::new(),
            max_bytes: 2 * 1024 * 1024,
            timeout_secs: 10,
            max_redirects: 5,
        }
    }
}

impl Config {
    /// The database URL, with the SQLite default filled in.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("kith.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// Checks that go beyond the type of each value. Returns one message per problem.
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if ruma::ServerName::parse(&self.server_name).is_err() {
            errors.push(format!("server_name: {:?} is not a valid server name", self.server_name));
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            errors.push("database.url: must start with sqlite:// or postgres://".to_owned());
        }
        if !crate::service::room_versions::is_supported(&self.default_room_version) {
            errors
                .push(format!("default_room_version: {:?} is not a supported room version", self.default_room_version));
        }
        if self.rate_limits.login_per_second <= 0.0 || self.rate_limits.register_per_second <= 0.0 {
            errors.push("rate_limits: the per-second rates must be greater than 0".to_owned());
        }
        if self.limits.max_request_body_bytes < 1024 {
            errors.push("limits.max_request_body_bytes: must be at least 1024".to_owned());
        }
        if self.presence.idle_timeout_secs == 0 || self.presence.offline_timeout_secs == 0 {
            errors.push("presence: idle_timeout_secs and offline_timeout_secs must be greater than 0".to_owned());
        }
        if self.media.max_upload_bytes == 0 {
            errors.push("media.max_upload_bytes: must be greater than 0".to_owned());
        }
        for range in &self.media.url_preview.allowed_ip_ranges {
            if crate::service::media::ssrf::IpRange::parse(range).is_none() {
                errors.push(format!("media.url_preview.allowed_ip_ranges: {range:?} is not a range like 10.0.0.0/8"));
            }
        }
        if self.media.url_preview.timeout_secs == 0 {
            errors.push("media.url_preview.timeout_secs: must be greater than 0".to_owned());
        }
        if self.auth.access_token_lifetime_ms == 0 {
            errors.push("auth.access_token_lifetime_ms: must be greater than 0".to_owned());
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_is_the_default() {
        let parsed: Config = toml::from_str(EXAMPLE).expect("example parses");
        let default = Config::default();
        assert_eq!(parsed.server_name, default.server_name);
        assert_eq!(parsed.listen.client, default.listen.client);
        assert_eq!(parsed.listen.metrics, default.listen.metrics);
        assert_eq!(parsed.registration.mode, default.registration.mode);
        assert_eq!(parsed.rate_limits.login_burst, default.rate_limits.login_burst);
        assert_eq!(parsed.auth.access_token_lifetime_ms, default.auth.access_token_lifetime_ms);
        assert_eq!(parsed.limits.max_request_body_bytes, default.limits.max_request_body_bytes);
        assert_eq!(parsed.media.max_upload_bytes, default.media.max_upload_bytes);
        assert_eq!(parsed.media.memory_cache_bytes, default.media.memory_cache_bytes);
        assert_eq!(parsed.media.url_preview.enabled, default.media.url_preview.enabled);
        assert_eq!(parsed.media.url_preview.max_bytes, default.media.url_preview.max_bytes);
        assert_eq!(parsed.database.max_connections, default.database.max_connections);
        assert!(parsed.validate().is_empty());
    }

    #[test]
    fn the_pool_is_sized_to_the_machine_unless_set() {
        let mut database = Database::default();
        assert_eq!(database.pool_size(), 2 * crate::cores() + 2);
        database.max_connections = 3;
        assert_eq!(database.pool_size(), 3);
    }

    #[test]
    fn media_settings_are_checked() {
        let mut config = Config::default();
        config.media.url_preview.allowed_ip_ranges = vec!["127.0.0.0/8".into(), "fd00::/8".into()];
        assert!(config.validate().is_empty());
        config.media.url_preview.allowed_ip_ranges.push("localhost".into());
        config.media.max_upload_bytes = 0;
        let errors = config.validate().join("\n");
        assert!(errors.contains("media.url_preview.allowed_ip_ranges"), "{errors}");
        assert!(errors.contains("media.max_upload_bytes"), "{errors}");
    }
}
