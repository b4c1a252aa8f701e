//! Token-bucket rate limits for registration and login, per client IP and per user.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::config::RateLimits;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Login,
    Register,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimiter {
    config: RateLimits,
    buckets: Cache<(Action, String), Arc<Mutex<Bucket>>>,
}

impl RateLimiter {
    pub fn new(config: RateLimits) -> Self {
        // A bucket left alone for ten minutes is full again, so it can be forgotten.
        let buckets = Cache::builder().max_capacity(200_000).time_to_idle(Duration::from_secs(600)).build();
        Self { config, buckets }
    }

    fn rate(&self, action: Action) -> (f64, f64) {
        match action {
            Action::Login => (self.config.login_per_second, self.config.login_burst as f64),
            Action::Register => (self.config.register_per_second, self.config.register_burst as f64),
        }
    }

    /// Takes one token from the bucket of `key` (an IP address or a user id),
    /// or fails with 429 M_LIMIT_EXCEEDED saying when to retry.
    pub fn check(&self, action: Action, key: &str) -> Result<()> {
        if !self.config.enabled {
            return Ok(());
        }
        let (per_second, burst) = self.rate(action);
        let bucket = self.buckets.get_with((action, key.to_owned()), || {
            Arc::new(Mutex::new(Bucket { tokens: burst, updated: Instant::now() }))
        });
        let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.updated).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(Error::limit_exceeded((wait * 1000.0).ceil() as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited_per_key() {
        let limiter = RateLimiter::new(RateLimits { login_burst: 2, login_per_second: 0.1, ..RateLimits::default() });
        assert!(limiter.check(Action::Login, "1.2.3.4").is_ok());
        assert!(limiter.check(Action::Login, "1.2.3.4").is_ok());
        let err = limiter.check(Action::Login, "1.2.3.4").unwrap_err();
        assert_eq!(err.errcode, "M_LIMIT_EXCEEDED");
        assert!(err.extra["retry_after_ms"].as_u64().unwrap() > 1000);
        // Other keys and actions have their own buckets.
        assert!(limiter.check(Action::Login, "5.6.7.8").is_ok());
        assert!(limiter.check(Action::Register, "1.2.3.4").is_ok());
    }

    #[test]
    fn disabled_never_limits() {
        let limiter = RateLimiter::new(RateLimits { enabled: false, login_burst: 0, ..RateLimits::default() });
        for _ in 0..100 {
            assert!(limiter.check(Action::Login, "x").is_ok());
        }
    }
}
