//! A checkpoint's table of contents, `_metadata`: written last, so a checkpoint without it was
//! never completed. It names what the `state` file holds (each operator's state, each sink's
//! staged rows, by offset and length) and carries what is small enough to read at a glance:
//! source positions, sizes, times.

use serde::{Deserialize, Serialize};

pub use crate::stream::Positions;

/// The version of this layout; a newer one is refused, not misread.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `pipeline.name`, else the file's name.
    pub job: String,
    /// Set when the job first started without state; kept by every restore. Sinks put it in
    /// their deduplication tokens and file names, so a `--fresh` start never collides with them.
    pub run_id: String,
    pub epoch: u64,
    pub kind: CheckpointKind,
    /// Milliseconds since the Unix epoch when the checkpoint completed.
    pub created_ms: i64,
    /// From the checkpoint's trigger to its manifest being written.
    pub duration_ms: u64,
    /// Key groups the keyed state is divided into (`pipeline.max-parallelism`).
    pub max_parallelism: u32,
    /// Size and CRC-32 of the `state` file, checked before anything in it is used.
    pub state_bytes: u64,
    pub state_crc32: u32,
    /// The state file's name when it is not `state`: a worker's own (`state-<worker>`), so
    /// two workers that both think they own a partition never overwrite each other's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<String>,
    pub sources: Vec<SourceState>,
    pub pipelines: Vec<PipelineState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    /// Taken at the interval while running.
    Checkpoint,
    /// Taken when the job stopped (Ctrl-C, SIGTERM): windows still open are in it.
    Savepoint,
    /// Taken when every input ended.
    Final,
}

impl CheckpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Checkpoint => "checkpoint",
            CheckpointKind::Savepoint => "savepoint",
            CheckpointKind::Final => "final",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceState {
    pub table: String,
    pub positions: Positions,
    /// Each split's watermark at the barrier, by the keys of `positions`: a split that sees
    /// no more rows after a restore (or after moving to another worker) does not hold event
    /// time back.
    #[serde(default, skip_serializing_if = "SplitWatermarks::is_empty")]
    pub watermarks: SplitWatermarks,
}

/// Watermarks of a source's splits, by split key.
pub type SplitWatermarks = std::collections::BTreeMap<String, i64>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineState {
    /// The pipeline's stable name (its INSERT targets).
    pub id: String,
    /// The pipeline's event-time watermark at the barrier (`i64::MIN` before the first).
    pub watermark: i64,
    pub operators: Vec<OperatorState>,
    pub sinks: Vec<SinkState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorState {
    /// Stable across edits of the file: `<pipeline>/<kind>` (`#n` from the second of a kind).
    pub id: String,
    /// What the operator computes (`sluice explain`'s line); state is only restored into an
    /// operator that computes the same.
    pub describe: String,
    pub blob: Blob,
}

/// Rows a sink holds for checkpoint epochs not yet known to be committed, to be written again
/// (idempotently) after a restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkState {
    pub id: String,
    pub table: String,
    pub epochs: Vec<StagedEpoch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedEpoch {
    pub epoch: u64,
    pub rows: u64,
    pub blob: Blob,
}

/// A byte range of the `state` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub offset: u64,
    pub len: u64,
}

impl Manifest {
    /// An empty checkpoint of job `job` at `epoch`, for tests.
    #[cfg(test)]
    pub(crate) fn empty(job: &str, epoch: u64) -> Manifest {
        Manifest {
            format: 0,
            job: job.into(),
            run_id: "run".into(),
            epoch,
            kind: CheckpointKind::Checkpoint,
            created_ms: 0,
            duration_ms: 0,
            max_parallelism: 128,
            state_bytes: 0,
            state_crc32: 0,
            state_file: None,
            sources: vec![],
            pipelines: vec![],
        }
    }

    /// Total bytes of operator state (without staged sink rows).
    pub fn operator_bytes(&self) -> u64 {
        self.pipelines
            .iter()
            .flat_map(|p| &p.operators)
            .map(|o| o.blob.len)
            .sum()
    }

    /// Rows staged for sinks, not yet known to be committed.
    pub fn staged_rows(&self) -> u64 {
        self.pipelines
            .iter()
            .flat_map(|p| &p.sinks)
            .flat_map(|s| &s.epochs)
            .map(|e| e.rows)
            .sum()
    }
}
