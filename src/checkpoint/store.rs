//! Where checkpoints live: `file://` or `s3://` through the `object_store` crate.
//!
//! ```text
//! <dir>/<job>/chk-00000042/state        every state blob, back to back
//! <dir>/<job>/chk-00000042/_metadata    the manifest, written last
//! ```
//! Both are single PUTs, each atomic (a local file is written aside and renamed; an S3 object
//! appears whole or not at all). A checkpoint counts only once its `_metadata` exists and the
//! `state` file it names has the recorded size and CRC-32; anything else is a torn checkpoint,
//! skipped on restore in favour of the one before it and deleted by retention.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::manifest::{Blob, FORMAT, Manifest};

const MANIFEST: &str = "_metadata";
const STATE: &str = "state";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("checkpoint storage '{url}': {message}")]
    Url { url: String, message: String },
    #[error("checkpoint storage {location}: {source}")]
    Io {
        location: String,
        source: object_store::Error,
    },
    #[error("checkpoint {location} is unusable: {message}")]
    Invalid { location: String, message: String },
    /// Another worker owns the partition now: this one must not write for it.
    #[error("{location}: {message}")]
    Fenced { location: String, message: String },
}

/// The checkpoints of one job.
#[derive(Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    /// The job's directory inside the store.
    root: Path,
    /// `<url>/<job>`, for messages.
    shown: String,
    /// The job's directory when the store is the local file system: emptied checkpoint
    /// directories are removed there (object stores have no directories to remove).
    local_dir: Option<std::path::PathBuf>,
}

/// A checkpoint read back: its manifest and its verified `state` bytes.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub manifest: Manifest,
    /// Where it was read from, for messages.
    pub location: String,
    state: Bytes,
}

impl Checkpoint {
    /// The bytes of one blob of the state file.
    pub fn blob(&self, blob: Blob) -> &[u8] {
        let start = blob.offset as usize;
        &self.state[start..start + blob.len as usize]
    }

    /// A checkpoint built in memory (the checkpoints of several partitions as one).
    pub fn assembled(manifest: Manifest, location: String, state: StateFile) -> Checkpoint {
        Checkpoint {
            manifest,
            location,
            state: Bytes::from(state.bytes),
        }
    }
}

/// Collects blobs into one `state` file.
#[derive(Default)]
pub struct StateFile {
    bytes: Vec<u8>,
}

impl StateFile {
    pub fn add(&mut self, data: &[u8]) -> Blob {
        let blob = Blob {
            offset: self.bytes.len() as u64,
            len: data.len() as u64,
        };
        self.bytes.extend_from_slice(data);
        blob
    }

    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes of one blob added before.
    pub fn blob(&self, blob: Blob) -> &[u8] {
        let start = blob.offset as usize;
        &self.bytes[start..start + blob.len as usize]
    }
}

impl CheckpointStore {
    /// The store for `job` under `url` (`file:///abs/dir`, `s3://bucket/prefix`, or a plain
    /// directory path). S3 credentials, region and endpoint come from the `AWS_*` variables.
    pub fn open(url: &str, job: &str) -> Result<Self, StoreError> {
        let (store, base, shown, local) = resolve(url)?;
        let root = base.clone().join(job);
        Ok(CheckpointStore {
            store,
            root,
            shown: format!("{}/{job}", shown.trim_end_matches('/')),
            local_dir: local.map(|d| d.join(job)),
        })
    }

    /// The store whose root is exactly `url` (a job directory given by the user).
    pub fn at(url: &str) -> Result<Self, StoreError> {
        let (store, root, shown, local_dir) = resolve(url)?;
        Ok(CheckpointStore {
            store,
            root,
            shown,
            local_dir,
        })
    }

    /// `<url>/<job>`, for messages.
    pub fn location(&self) -> &str {
        &self.shown
    }

    /// The store of a directory inside this one (one source partition's checkpoints).
    pub fn child(&self, name: &str) -> CheckpointStore {
        CheckpointStore {
            store: self.store.clone(),
            root: self.root.clone().join(name),
            shown: format!("{}/{name}", self.shown),
            local_dir: self.local_dir.as_ref().map(|d| d.join(name)),
        }
    }

    /// The text of object `name` in this directory; when there is none, `create()` is stored
    /// there first, unless another process stored one at the same moment (then that one).
    pub async fn read_or_create(
        &self,
        name: &str,
        create: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        let path = self.root.clone().join(name);
        if let Some(text) = self.read_text(name).await? {
            return Ok(text);
        }
        let text = create();
        let create_only = object_store::PutOptions::from(object_store::PutMode::Create);
        match self
            .store
            .put_opts(&path, PutPayload::from(text.clone()), create_only)
            .await
        {
            Ok(_) => Ok(text),
            Err(object_store::Error::AlreadyExists { .. }) => self
                .read_text(name)
                .await?
                .ok_or_else(|| StoreError::Invalid {
                    location: format!("{}/{name}", self.shown),
                    message: "it was created and is gone".into(),
                }),
            Err(e) => Err(self.io(name, e)),
        }
    }

    fn dir(&self, epoch: u64) -> Path {
        self.root.clone().join(format!("chk-{epoch:08}"))
    }

    fn shown_dir(&self, epoch: u64) -> String {
        format!("{}/chk-{epoch:08}", self.shown)
    }

    fn io(&self, what: &str, source: object_store::Error) -> StoreError {
        StoreError::Io {
            location: format!("{}/{what}", self.shown),
            source,
        }
    }

    /// Writes `state` then, last, the manifest (its size and CRC filled in here).
    pub async fn write(&self, manifest: &mut Manifest, state: StateFile) -> Result<(), StoreError> {
        self.put_checkpoint(manifest, state, None).await
    }

    /// As [`write`](Self::write), for a worker named `writer`: its state file is its own, and
    /// the manifest is only created, never replaced — of two workers writing the same epoch,
    /// the second is refused.
    pub async fn write_exclusive(
        &self,
        manifest: &mut Manifest,
        state: StateFile,
        writer: &str,
    ) -> Result<(), StoreError> {
        self.put_checkpoint(manifest, state, Some(writer)).await
    }

    async fn put_checkpoint(
        &self,
        manifest: &mut Manifest,
        state: StateFile,
        writer: Option<&str>,
    ) -> Result<(), StoreError> {
        let dir = self.dir(manifest.epoch);
        manifest.format = FORMAT;
        manifest.state_bytes = state.len();
        manifest.state_crc32 = crc32fast::hash(&state.bytes);
        manifest.state_file = writer.map(|w| format!("{STATE}-{w}"));
        let state_name = manifest.state_file.clone().unwrap_or(STATE.to_string());
        let name = format!("chk-{:08}/{state_name}", manifest.epoch);
        self.store
            .put(&dir.clone().join(state_name), PutPayload::from(state.bytes))
            .await
            .map_err(|e| self.io(&name, e))?;
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
        let name = format!("chk-{:08}/{MANIFEST}", manifest.epoch);
        let mode = match writer {
            Some(_) => object_store::PutMode::Create,
            None => object_store::PutMode::Overwrite,
        };
        match self
            .store
            .put_opts(&dir.join(MANIFEST), PutPayload::from(json), mode.into())
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(StoreError::Fenced {
                location: self.shown_dir(manifest.epoch),
                message: "another worker completed this checkpoint first: it owns the partition"
                    .into(),
            }),
            Err(e) => Err(self.io(&name, e)),
        }
    }

    /// Replaces object `name` of this directory with `text`.
    pub async fn write_text(&self, name: &str, text: &str) -> Result<(), StoreError> {
        self.store
            .put(
                &self.root.clone().join(name),
                PutPayload::from(text.to_string()),
            )
            .await
            .map(|_| ())
            .map_err(|e| self.io(name, e))
    }

    /// The text of object `name` of this directory, if there is one.
    pub async fn read_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.store.get(&self.root.clone().join(name)).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| self.io(name, e))?;
                Ok(Some(String::from_utf8_lossy(&bytes).trim().to_string()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.io(name, e)),
        }
    }

    /// Epochs that have a directory, complete or not, oldest first.
    async fn epochs(&self) -> Result<Vec<u64>, StoreError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.root))
            .await
            .map_err(|e| self.io("", e))?;
        let mut epochs: Vec<u64> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// The newest epoch with a directory, complete or not (0 when there is none).
    pub async fn newest_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.epochs().await?.last().copied().unwrap_or(0))
    }

    /// The manifests of every complete checkpoint (not checked against their state), oldest
    /// first.
    pub async fn list(&self) -> Result<Vec<Manifest>, StoreError> {
        let mut out = Vec::new();
        for epoch in self.epochs().await? {
            if let Ok(Some(m)) = self.manifest(epoch).await {
                out.push(m);
            }
        }
        Ok(out)
    }

    async fn manifest(&self, epoch: u64) -> Result<Option<Manifest>, StoreError> {
        let location = self.shown_dir(epoch);
        let bytes = match self.store.get(&self.dir(epoch).join(MANIFEST)).await {
            Ok(r) => r.bytes().await.map_err(|e| self.io(&location, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.io(&location, e)),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
                location: location.clone(),
                message: format!("{MANIFEST} is not a manifest: {e}"),
            })?;
        if manifest.format > FORMAT {
            return Err(StoreError::Invalid {
                location,
                message: format!(
                    "written by a newer Sluice (format {}, this one reads {FORMAT})",
                    manifest.format
                ),
            });
        }
        Ok(Some(manifest))
    }

    /// Reads checkpoint `epoch` and verifies its state file.
    pub async fn read(&self, epoch: u64) -> Result<Checkpoint, StoreError> {
        let location = self.shown_dir(epoch);
        let manifest = self
            .manifest(epoch)
            .await?
            .ok_or_else(|| StoreError::Invalid {
                location: location.clone(),
                message: format!("it has no {MANIFEST}: it was never completed"),
            })?;
        let state_name = manifest.state_file.as_deref().unwrap_or(STATE);
        let state = match self.store.get(&self.dir(epoch).join(state_name)).await {
            Ok(r) => r.bytes().await.map_err(|e| self.io(&location, e))?,
            Err(object_store::Error::NotFound { .. }) => Bytes::new(),
            Err(e) => return Err(self.io(&location, e)),
        };
        if state.len() as u64 != manifest.state_bytes
            || crc32fast::hash(&state) != manifest.state_crc32
        {
            return Err(StoreError::Invalid {
                location,
                message: format!(
                    "its state file is torn ({} bytes, {} expected, or a checksum mismatch)",
                    state.len(),
                    manifest.state_bytes
                ),
            });
        }
        Ok(Checkpoint {
            manifest,
            location,
            state,
        })
    }

    /// The newest checkpoint that is complete and intact; torn ones are skipped with a warning.
    pub async fn latest(&self) -> Result<Option<Checkpoint>, StoreError> {
        for epoch in self.epochs().await?.into_iter().rev() {
            match self.read(epoch).await {
                Ok(c) => return Ok(Some(c)),
                Err(e @ StoreError::Invalid { .. }) => tracing::warn!("skipping: {e}"),
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Deletes every checkpoint older than the `keep` newest complete ones, and incomplete ones
    /// older than the newest complete one.
    pub async fn retain(&self, keep: usize) -> Result<(), StoreError> {
        let epochs = self.epochs().await?;
        let mut complete = Vec::new();
        for &e in &epochs {
            if self.manifest(e).await.ok().flatten().is_some() {
                complete.push(e);
            }
        }
        let Some(&oldest_kept) = complete
            .len()
            .checked_sub(keep.max(1))
            .map_or(complete.first(), |i| complete.get(i))
        else {
            return Ok(());
        };
        for e in epochs.into_iter().filter(|&e| e < oldest_kept) {
            self.delete(e).await?;
        }
        Ok(())
    }

    async fn delete(&self, epoch: u64) -> Result<(), StoreError> {
        let dir = self.dir(epoch);
        let files: Vec<_> = self
            .store
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.io(&format!("chk-{epoch:08}"), e))?;
        // The manifest first: a half-deleted checkpoint must not look complete.
        let (manifest, rest): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|p| p.filename() == Some(MANIFEST));
        for p in manifest.into_iter().chain(rest) {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.io(&format!("chk-{epoch:08}"), e)),
            }
        }
        if let Some(dir) = &self.local_dir {
            let _ = std::fs::remove_dir(dir.join(format!("chk-{epoch:08}")));
        }
        Ok(())
    }
}

/// The object store, the path inside it, the URL as shown to users, and the local directory
/// when it is one.
type Resolved = (
    Arc<dyn ObjectStore>,
    Path,
    String,
    Option<std::path::PathBuf>,
);

fn resolve(url: &str) -> Result<Resolved, StoreError> {
    let bad = |message: String| StoreError::Url {
        url: url.to_string(),
        message,
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket: expected s3://bucket/prefix".into()));
        }
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let root = Path::parse(prefix).map_err(|e| bad(e.to_string()))?;
        return Ok((
            Arc::new(store),
            root,
            url.trim_end_matches('/').to_string(),
            None,
        ));
    }
    let dir = match url.strip_prefix("file://") {
        Some(path) => std::path::PathBuf::from(path),
        None if url.contains("://") => {
            return Err(bad("expected a file:// or s3:// URL, or a directory".into()));
        }
        None => std::path::PathBuf::from(url),
    };
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir()
            .map_err(|e| bad(e.to_string()))?
            .join(dir)
    };
    std::fs::create_dir_all(&dir).map_err(|e| bad(format!("cannot create the directory: {e}")))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
        .map_err(|e| bad(e.to_string()))?;
    Ok((
        Arc::new(store),
        Path::default(),
        format!("file://{}", dir.display()),
        Some(dir),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(epoch: u64) -> Manifest {
        Manifest::empty("j", epoch)
    }

    async fn write(store: &CheckpointStore, epoch: u64, data: &[u8]) -> Blob {
        let mut state = StateFile::default();
        let blob = state.add(data);
        store.write(&mut manifest(epoch), state).await.unwrap();
        blob
    }

    #[tokio::test]
    async fn the_latest_intact_checkpoint_is_restored_and_torn_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path().to_str().unwrap(), "job").unwrap();
        assert!(store.latest().await.unwrap().is_none());
        let blob = write(&store, 1, b"one").await;
        write(&store, 2, b"two").await;
        // Epoch 3 crashed between its state file and its manifest.
        std::fs::create_dir_all(dir.path().join("job/chk-00000003")).unwrap();
        std::fs::write(dir.path().join("job/chk-00000003/state"), b"three").unwrap();
        let latest = store.latest().await.unwrap().unwrap();
        assert_eq!(latest.manifest.epoch, 2);
        assert_eq!(latest.blob(blob), b"two");

        // Epoch 2's state is damaged after the fact: epoch 1 is next.
        std::fs::write(dir.path().join("job/chk-00000002/state"), b"tw0").unwrap();
        let latest = store.latest().await.unwrap().unwrap();
        assert_eq!(latest.manifest.epoch, 1);
        assert_eq!(latest.blob(blob), b"one");
        let err = store.read(2).await.unwrap_err().to_string();
        assert!(
            err.contains("chk-00000002") && err.contains("torn"),
            "{err}"
        );

        // Retention keeps the newest complete one; the torn and unfinished go too.
        store.retain(1).await.unwrap();
        let left: Vec<u64> = store.epochs().await.unwrap();
        assert_eq!(left, vec![2, 3]);
        write(&store, 4, b"four").await;
        store.retain(1).await.unwrap();
        assert_eq!(store.epochs().await.unwrap(), vec![4]);
        assert_eq!(store.list().await.unwrap().len(), 1);
    }
}
