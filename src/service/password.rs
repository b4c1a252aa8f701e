//! Password hashing with argon2id.
//!
//! Hashing runs on a small pool of dedicated threads (one per core), never on
//! the async threads, so a burst of logins cannot stall other requests. A fixed
//! pool also bounds memory: hashing on tokio's blocking pool (up to 512
//! threads, each keeping its own allocator arena) let a login burst grow the
//! process by gigabytes.
//!
//! Parameters: argon2id with 7 MiB, 5 passes, 1 lane, one of the OWASP
//! Password Storage Cheat Sheet's equivalent minimums (19 MiB × 2 passes is
//! another; they cost an attacker the same, the smaller block simply holds
//! less memory per hash in flight). Each hashing thread keeps its block
//! memory between back-to-back hashes (a fresh 7 MiB is 1,792 page faults)
//! and gives it back once its queue is empty. Hashes stored with other
//! parameters (e.g. the 19 MiB of earlier versions) still verify: the
//! parameters are read from the stored PHC string.

use std::cell::RefCell;
use std::sync::{Arc, LazyLock, Mutex, mpsc};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Memory in KiB (argon2 blocks of 1 KiB), passes, lanes.
const MEMORY_KIB: u32 = 7 * 1024;
const PASSES: u32 = 5;
const LANES: u32 = 1;

type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// The hashing thread's argon2 block memory, kept between queued hashes.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

static POOL: LazyLock<mpsc::Sender<Job>> = LazyLock::new(|| {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    let threads = crate::cores();
    for i in 0..threads {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("kith-argon2-{i}"))
            .spawn(move || run_hashing_thread(&receiver))
            .expect("can start password hashing threads");
    }
    sender
});

fn run_hashing_thread(receiver: &Mutex<mpsc::Receiver<Job>>) {
    let mut next: Option<Job> = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => {
                // Nothing queued: give the block memory back before waiting.
                BLOCKS.with(|blocks| *blocks.borrow_mut() = Vec::new());
                match receiver.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            }
        };
        job();
        // Not `lock()`: another thread may hold the receiver while it waits in
        // `recv` (so nothing is queued), and this one would wait behind it
        // holding its block memory.
        next = match receiver.try_lock() {
            Ok(receiver) => receiver.try_recv().ok(),
            Err(_) => None,
        };
    }
}

async fn on_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (tx, rx) = oneshot::channel();
    POOL.send(Box::new(move || {
        let _ = tx.send(work());
    }))
    .map_err(Error::internal)?;
    rx.await.map_err(Error::internal)
}

/// Runs argon2 with `params` into `out`, in this thread's kept block memory.
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    let needed = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        argon2.hash_password_into_with_memory(password, salt, out, &mut blocks[..needed])
    })
}

fn current_params() -> Params {
    Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid argon2 parameters")
}

/// A PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) for `password`.
fn hash_now(password: &[u8], salt: &SaltString) -> Result<String> {
    let params = current_params();
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes).map_err(Error::internal)?;
    let params_string = ParamsString::try_from(&params).map_err(Error::internal)?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon2_into(Algorithm::Argon2id, Version::V0x13, params, password, salt_bytes, out)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(Error::internal)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: params_string,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored` (any argon2 variant and
/// parameters). The comparison of the outputs is constant-time (`Output`'s `==`).
fn matches(password: &[u8], stored: &str) -> bool {
    let Ok(phc) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(phc.algorithm) else { return false };
    let version = match phc.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&phc) else { return false };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else { return false };
    let computed = Output::init_with(expected.len(), |out| {
        argon2_into(algorithm, version, params, password, salt_bytes, out)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    });
    computed.is_ok_and(|computed| computed == expected)
}

pub async fn hash(password: String) -> Result<String> {
    on_pool(move || {
        let salt = SaltString::generate(&mut OsRng);
        hash_now(password.as_bytes(), &salt)
    })
    .await?
}

/// Checks a password against a stored hash. With no hash (unknown user, or an
/// account without a password) it still spends the time of one check, so that
/// response times do not tell which user names exist.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool> {
    on_pool(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        matches(password.as_bytes(), &stored) && stored != *DUMMY_HASH
    })
    .await
}

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    hash_now(b"not a password", &salt).expect("hashing works")
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
    async fn hashes_use_the_current_parameters() {
        let h = hash("pw".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{h}");
        // The argon2 crate's own verifier agrees with the PHC string we build.
        use argon2::PasswordVerifier;
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
    }

    #[tokio::test]
    async fn hashes_stored_with_other_parameters_still_verify() {
        // Earlier versions stored the argon2 crate's defaults (19 MiB, 2 passes).
        use argon2::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default().hash_password(b"old password", &salt).unwrap().to_string();
        assert!(old.contains("m=19456,t=2,p=1"), "{old}");
        assert!(verify("old password".into(), Some(old.clone())).await.unwrap());
        assert!(!verify("old passwore".into(), Some(old)).await.unwrap());
    }

    #[tokio::test]
    async fn malformed_stored_hashes_never_match() {
        let good = hash("pw".into()).await.unwrap();
        let no_hash = good.rsplit_once('$').unwrap().0.to_owned();
        for stored in ["", "plain", "$argon2id$v=19$m=7168,t=5,p=1$c2FsdA$", "$bcrypt$x", &no_hash] {
            assert!(!verify("pw".into(), Some(stored.to_owned())).await.unwrap(), "{stored}");
        }
        let other_variant = good.replacen("$argon2id$", "$argon2i$", 1);
        assert!(!verify("pw".into(), Some(other_variant)).await.unwrap());
    }

    #[test]
    fn block_memory_is_kept_while_hashes_are_queued_and_given_back_when_idle() {
        let (sender, receiver) = mpsc::channel::<Job>();
        let (report, reports) = mpsc::channel::<usize>();
        let blocks_len = move || {
            let report = report.clone();
            Box::new(move || {
                let _ = report.send(BLOCKS.with(|b| b.borrow().len()));
            }) as Job
        };
        // Queued before the thread starts, so they run back to back.
        let salt = SaltString::generate(&mut OsRng);
        sender.send(Box::new(move || drop(hash_now(b"pw", &salt)))).unwrap();
        sender.send(blocks_len()).unwrap();
        let receiver = Mutex::new(receiver);
        std::thread::scope(|scope| {
            scope.spawn(|| run_hashing_thread(&receiver));
            assert_eq!(reports.recv().unwrap(), MEMORY_KIB as usize);
            // The queue ran empty after the report: the next job finds it released.
            std::thread::sleep(std::time::Duration::from_millis(50));
            sender.send(blocks_len()).unwrap();
            assert_eq!(reports.recv().unwrap(), 0);
            drop(sender);
        });
    }

    #[test]
    fn idle_hashing_threads_hold_no_block_memory() {
        // Two threads share the queue; when it runs dry neither may keep its
        // blocks (one used to wait for the lock the other held in `recv`).
        let (sender, receiver) = mpsc::channel::<Job>();
        let (report, reports) = mpsc::channel::<usize>();
        let receiver = Mutex::new(receiver);
        std::thread::scope(|scope| {
            scope.spawn(|| run_hashing_thread(&receiver));
            scope.spawn(|| run_hashing_thread(&receiver));
            for _ in 0..3 {
                for _ in 0..4 {
                    let salt = SaltString::generate(&mut OsRng);
                    sender.send(Box::new(move || drop(hash_now(b"pw", &salt)))).unwrap();
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
                // Each report job blocks until both have run, so each thread runs one.
                let barrier = Arc::new(std::sync::Barrier::new(2));
                for _ in 0..2 {
                    let (report, barrier) = (report.clone(), barrier.clone());
                    sender
                        .send(Box::new(move || {
                            let _ = report.send(BLOCKS.with(|b| b.borrow().len()));
                            barrier.wait();
                        }))
                        .unwrap();
                }
                assert_eq!([reports.recv().unwrap(), reports.recv().unwrap()], [0, 0]);
            }
            drop(sender);
        });
    }

    #[tokio::test]
    async fn many_concurrent_hashes_complete() {
        let all: Vec<_> = (0..8).map(|i| tokio::spawn(hash(format!("pw{i}")))).collect();
        for handle in all {
            assert!(handle.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
    }
}
