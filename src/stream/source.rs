//! The trait a connector implements to read a table, and the output it reads into.
//!
//! A connector only turns bytes into *scan* batches (payload columns, then metadata columns)
//! and says which split (partition, file) they came from. Everything Flink's table source does
//! beyond that (computed columns, watermarks, fan-out to every pipeline reading the table,
//! counting) is the [`SourceOutput`]'s job, done the same way for every connector by the runtime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;

use super::JobError;
use super::metrics::SourceMetrics;

/// Where a source stands in one of its inputs after a batch: `key` names the input the same way
/// in every run (`topic/partition`, a file's path, a generator), `next` is the record to read
/// next (a Kafka offset, a byte offset, a sequence number). Checkpoints store these; a restored
/// source starts from them.
#[derive(Debug, Clone)]
pub struct Position {
    pub key: Arc<str>,
    pub next: u64,
}

/// Positions of every input of a source, by key.
pub type Positions = BTreeMap<String, u64>;

/// How a source's `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEnd {
    /// All input was read (bounded source): event time jumps to +∞ so every window closes.
    Exhausted,
    /// The job was asked to stop: no final watermark, open windows stay open.
    Stopped,
}

/// Reads a table's input and hands it, as scan batches, to the [`SourceOutput`].
#[async_trait]
pub trait Source: Send {
    /// Runs until the input ends ([`SourceEnd::Exhausted`]) or the job stops.
    async fn run(self: Box<Self>, out: &mut dyn SourceOutput) -> Result<SourceEnd, JobError>;
}

/// Where a [`Source`] sends what it reads.
#[async_trait]
pub trait SourceOutput: Send {
    /// Rows per batch a source aims for.
    fn batch_size(&self) -> usize;

    /// Longest a source holds rows back to fill a batch.
    fn linger(&self) -> Duration;

    /// The source's counters (a Kafka source reports its lag there).
    fn metrics(&self) -> &Arc<SourceMetrics>;

    /// True once the job has been asked to stop.
    fn is_stopped(&self) -> bool;

    /// Resolves when the job is asked to stop (use in `select!` next to reading).
    async fn stopped(&mut self);

    /// Declares how many splits (partitions, files) the source reads, for watermarks.
    fn set_splits(&mut self, n: usize);

    /// Names the splits by their position keys, in split order, so each takes back the
    /// watermark it had reached at the restored checkpoint.
    fn name_splits(&mut self, _keys: &[Arc<str>]) {}

    /// Counts records skipped as bad (already logged by the decoder).
    fn count_bad_records(&self, n: usize);

    /// Sends a batch of scan rows read from `split` downstream, with the watermark it advances;
    /// `position` is where the source stands once these rows are read (an empty batch still
    /// moves it, past records that were skipped). A checkpoint barrier is only ever placed
    /// between two emits, so the position and the rows sent always agree.
    async fn emit(
        &mut self,
        split: usize,
        scan: RecordBatch,
        position: Position,
    ) -> Result<(), JobError>;

    /// Moves split `split`'s watermark to `watermark`, for a source whose records carry it
    /// (a repartition topic) instead of the table computing it from the rows.
    async fn emit_watermark(&mut self, split: usize, watermark: i64) -> Result<(), JobError>;

    /// Positions restored from a checkpoint (empty on a fresh start): a source starts each
    /// input found here at its position instead of its configured startup mode.
    fn restored(&self) -> &Positions;

    /// True when the job takes checkpoints: a source then leaves committing its position
    /// elsewhere (a Kafka group) to [`SourceOutput::take_committed`].
    fn checkpointing(&self) -> bool;

    /// Positions of the newest checkpoint completed since the last call: safe to commit to an
    /// external position store (a consumer group), which is for monitoring only.
    fn take_committed(&mut self) -> Option<Positions>;

    /// Re-checks idle splits; call periodically when no data arrives.
    async fn tick(&mut self) -> Result<(), JobError>;
}
