//! Where media bytes live. [`ContentStore`] is the interface (an object-store
//! backend can implement it later); [`LocalContentStore`] keeps files on local
//! disk, named by the sha256 of their content, so identical uploads are stored once.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

/// A stream of a file's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Content being written: bytes go in as they arrive; `commit` files them under their hash.
#[async_trait]
pub trait ContentWriter: Send {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()>;
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Stores the content; returns its sha256 (lowercase hex).
    async fn commit(self: Box<Self>) -> io::Result<String>;
    /// Drops what was written.
    async fn abort(self: Box<Self>);
}

#[async_trait]
pub trait ContentStore: Send + Sync {
    async fn writer(&self) -> io::Result<Box<dyn ContentWriter>>;
    /// Streams `len` bytes from `offset`; `None` when there is no such content.
    async fn stream(&self, sha256: &str, offset: u64, len: u64) -> io::Result<Option<ByteStream>>;
    /// Reads the whole content (callers keep this for small files).
    async fn read(&self, sha256: &str) -> io::Result<Option<Bytes>>;
    async fn delete(&self, sha256: &str) -> io::Result<()>;
}

/// Stores `bytes` (a thumbnail, a fetched image) and returns its hash.
pub async fn put_bytes(store: &dyn ContentStore, bytes: &[u8]) -> io::Result<String> {
    let mut writer = store.writer().await?;
    writer.write(bytes).await?;
    writer.commit().await
}

/// Files under `<root>/content/ab/cd/<sha256>`, uploads in progress under `<root>/tmp`.
pub struct LocalContentStore {
    root: PathBuf,
}

impl LocalContentStore {
    pub fn open(root: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(root.join("content"))?;
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        // Leftovers of uploads cut short by a restart. Only old ones: the admin CLI
        // opens the store too, while the server may be receiving uploads.
        let stale = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for entry in std::fs::read_dir(&tmp)?.flatten() {
            if entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < stale) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self { root })
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        valid.then(|| self.root.join("content").join(&sha256[0..2]).join(&sha256[2..4]).join(sha256))
    }
}

struct LocalWriter {
    file: BufWriter<tokio::fs::File>,
    tmp_path: PathBuf,
    content_root: PathBuf,
    hasher: Sha256,
    len: u64,
}

#[async_trait]
impl ContentWriter for LocalWriter {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        self.file.write_all(chunk).await
    }

    fn written(&self) -> u64 {
        self.len
    }

    async fn commit(mut self: Box<Self>) -> io::Result<String> {
        self.file.flush().await?;
        self.file.get_ref().sync_all().await?;
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let dir = self.content_root.join(&sha256[0..2]).join(&sha256[2..4]);
        tokio::fs::create_dir_all(&dir).await?;
        let target = dir.join(&sha256);
        if tokio::fs::try_exists(&target).await? {
            // Already stored: identical content is kept once.
            let _ = tokio::fs::remove_file(&self.tmp_path).await;
        } else {
            tokio::fs::rename(&self.tmp_path, &target).await?;
        }
        Ok(sha256)
    }

    async fn abort(self: Box<Self>) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.tmp_path).await;
    }
}

#[async_trait]
impl ContentStore for LocalContentStore {
    async fn writer(&self) -> io::Result<Box<dyn ContentWriter>> {
        let name: String = {
            use rand::Rng;
            let mut rng = rand::thread_rng();
            (0..24).map(|_| rng.sample(rand::distributions::Alphanumeric) as char).collect()
        };
        let tmp_path = self.root.join("tmp").join(name);
        let file = tokio::fs::File::create(&tmp_path).await?;
        Ok(Box::new(LocalWriter {
            file: BufWriter::with_capacity(256 * 1024, file),
            tmp_path,
            content_root: self.root.join("content"),
            hasher: Sha256::new(),
            len: 0,
        }))
    }

    async fn stream(&self, sha256: &str, offset: u64, len: u64) -> io::Result<Option<ByteStream>> {
        let Some(path) = self.path(sha256) else { return Ok(None) };
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if offset > 0 {
            file.seek(io::SeekFrom::Start(offset)).await?;
        }
        use tokio::io::AsyncReadExt;
        let reader = file.take(len);
        Ok(Some(Box::pin(tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024))))
    }

    async fn read(&self, sha256: &str) -> io::Result<Option<Bytes>> {
        let Some(path) = self.path(sha256) else { return Ok(None) };
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, sha256: &str) -> io::Result<()> {
        let Some(path) = self.path(sha256) else { return Ok(()) };
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn identical_content_is_stored_once_and_ranges_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalContentStore::open(dir.path().to_path_buf()).unwrap();
        let a = put_bytes(&store, b"hello world").await.unwrap();
        let b = put_bytes(&store, b"hello world").await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a, hex::encode(Sha256::digest(b"hello world")));
        let files = walk(&dir.path().join("content"));
        assert_eq!(files, 1);
        let mut stream = store.stream(&a, 6, 5).await.unwrap().unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(out, b"world");
        assert!(store.read("../../etc/passwd").await.unwrap().is_none());
        store.delete(&a).await.unwrap();
        assert!(store.read(&a).await.unwrap().is_none());
    }

    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() { walk(&e.path()) } else { 1 }
            })
            .sum()
    }
}
