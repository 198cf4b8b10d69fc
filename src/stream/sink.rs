//! The trait a connector implements to write a pipeline's output.

use arrow::array::RecordBatch;
use async_trait::async_trait;

use super::JobError;

/// Writes a pipeline's output.
#[async_trait]
pub trait Sink: Send {
    /// Connects and checks the target before any row flows (a ClickHouse table's columns), so a
    /// mismatch fails the job at start. `writer` names this sink instance: the same in every
    /// run restored from the same checkpoints, different for another job, another sink of the
    /// job or a fresh start (deduplication tokens and part file names are made from it).
    async fn open(&mut self, _writer: &str) -> Result<(), JobError> {
        Ok(())
    }

    /// True when the sink implements [`Sink::write_epoch`]: with exactly-once checkpoints the
    /// runtime then holds each checkpoint's rows and hands them over once it completes.
    fn writes_epochs(&self) -> bool {
        false
    }

    /// Writes the rows of checkpoint `epoch`, which is complete, and returns once they are
    /// stored. Idempotent: the same epoch with the same batches written again (after a crash
    /// in the middle, the runtime replays it from the checkpoint) leaves one copy.
    async fn write_epoch(&mut self, epoch: u64, _batches: &[RecordBatch]) -> Result<(), JobError> {
        Err(JobError::internal(format!(
            "this sink cannot write checkpoint epoch {epoch}"
        )))
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), JobError>;

    /// A checkpoint barrier passed a sink that writes at once (at-least-once): everything
    /// written so far must be stored and visible before the checkpoint says it was written.
    async fn barrier(&mut self) -> Result<(), JobError> {
        self.flush().await
    }

    /// Makes everything written so far durable/visible (called periodically and at barriers).
    async fn flush(&mut self) -> Result<(), JobError>;
    /// Flushes and closes at the end of the job.
    async fn finish(&mut self) -> Result<(), JobError>;
}
