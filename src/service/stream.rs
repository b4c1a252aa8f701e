//! A position counter for one of the streams that sync tokens name.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::Result;

/// A stream whose positions become visible only once their rows are stored:
/// writers are serialised, so a reader never skips a change still being written.
pub struct Stream {
    position: AtomicI64,
    write: tokio::sync::Mutex<()>,
}

impl Stream {
    pub fn new(position: i64) -> Self {
        Self { position: AtomicI64::new(position), write: tokio::sync::Mutex::new(()) }
    }

    pub fn position(&self) -> i64 {
        self.position.load(Ordering::SeqCst)
    }

    /// Runs `write` with the next position; the position is published when it succeeds.
    pub async fn append<T, F>(&self, write: impl FnOnce(i64) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let _guard = self.write.lock().await;
        let next = self.position() + 1;
        let out = write(next).await?;
        self.position.store(next, Ordering::SeqCst);
        Ok(out)
    }
}
