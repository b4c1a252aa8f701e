//! Password hashing with argon2id.
//!
//! Hashing runs on a small pool of dedicated threads (one per core), never on
//! the async threads, so a burst of logins cannot stall other requests. A fixed
//! pool also bounds memory: each argon2 hash needs ~19 MiB, and hashing on
//! tokio's blocking pool (up to 512 threads, each keeping its own allocator
//! arena) let a login burst grow the process by gigabytes.

use std::sync::{Arc, LazyLock, Mutex, mpsc};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

static POOL: LazyLock<mpsc::Sender<Job>> = LazyLock::new(|| {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    let threads = crate::cores();
    for i in 0..threads {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("kith-argon2-{i}"))
            .spawn(move || {
                loop {
                    let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                }
            })
            .expect("can start password hashing threads");
    }
    sender
});

async fn on_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (tx, rx) = oneshot::channel();
    POOL.send(Box::new(move || {
        let _ = tx.send(work());
    }))
    .map_err(Error::internal)?;
    rx.await.map_err(Error::internal)
}

pub async fn hash(password: String) -> Result<String> {
    on_pool(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await?
    .map_err(Error::internal)
}

/// Checks a password against a stored hash. With no hash (unknown user, or an
/// account without a password) it still spends the time of one check, so that
/// response times do not tell which user names exist.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool> {
    on_pool(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let Ok(parsed) = PasswordHash::new(&stored) else { return false };
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        ok && stored != *DUMMY_HASH
    })
    .await
}

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(b"not a password", &salt).expect("hashing works").to_string()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse".into(), Some(h.clone())).await.unwrap());
        assert!(!verify("wrong".into(), Some(h)).await.unwrap());
        assert!(!verify("not a password".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn many_concurrent_hashes_complete() {
        let all: Vec<_> = (0..8).map(|i| tokio::spawn(hash(format!("pw{i}")))).collect();
        for handle in all {
            assert!(handle.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
    }
}
