//! The trait a connector implements to write a pipeline's output.

use arrow::array::RecordBatch;
use async_trait::async_trait;

use super::JobError;

/// Writes a pipeline's output.
#[async_trait]
pub trait Sink: Send {
    /// Connects and checks the target before any row flows (a ClickHouse table's columns), so a
    /// mismatch fails the job at start. `writer` names this sink instance uniquely within the
    /// job's runs (job name and pipeline; deduplication tokens use it).
    async fn open(&mut self, _writer: &str) -> Result<(), JobError> {
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), JobError>;
    /// Makes everything written so far durable/visible (called periodically and at barriers).
    async fn flush(&mut self) -> Result<(), JobError>;
    /// Flushes and closes at the end of the job.
    async fn finish(&mut self) -> Result<(), JobError>;
}
