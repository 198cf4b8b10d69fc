//! Checkpoints: what a job's state looks like at rest, where it is kept, and the settings that
//! say how often and how failures are recovered.
//!
//! The runtime takes a checkpoint with aligned barriers (see `runtime::coordinator`); this
//! module knows nothing of operators or tasks: it stores a [`Manifest`] and a state file and
//! reads them back, newest intact first.

mod config;
pub mod manifest;
mod partitioned;
mod store;
mod target;

pub use config::{
    CheckpointConfig, CheckpointMode, KEYS, RestartStrategy, data_dir, default_checkpoint_dir,
};
pub use manifest::{CheckpointKind, Manifest, Positions};
pub use partitioned::PartitionCheckpoints;
pub use store::{Checkpoint, CheckpointStore, StateFile, StoreError};
pub use target::CheckpointTarget;
