//! Where a running job writes its checkpoints: its own directory, or one directory per source
//! partition when several workers share the job.

use super::manifest::Manifest;
use super::partitioned::PartitionCheckpoints;
use super::store::{CheckpointStore, StateFile, StoreError};

pub enum CheckpointTarget {
    /// One process runs the whole job: `<dir>/<job>/chk-N`.
    Job(CheckpointStore),
    /// A worker runs some partitions' tasks: `<dir>/<job>/partition-P/chk-N`.
    Partitions(PartitionCheckpoints),
}

impl CheckpointTarget {
    pub fn location(&self) -> &str {
        match self {
            CheckpointTarget::Job(s) => s.location(),
            CheckpointTarget::Partitions(p) => p.location(),
        }
    }

    pub async fn write(&self, manifest: &mut Manifest, state: StateFile) -> Result<(), StoreError> {
        match self {
            CheckpointTarget::Job(s) => s.write(manifest, state).await,
            CheckpointTarget::Partitions(p) => p.write(manifest, &state).await,
        }
    }

    pub async fn retain(&self, keep: usize) -> Result<(), StoreError> {
        match self {
            CheckpointTarget::Job(s) => s.retain(keep).await,
            CheckpointTarget::Partitions(p) => p.retain(keep).await,
        }
    }
}
