//! `blackhole`: discards every row. For benchmarks and for testing a pipeline's upstream.

use arrow::array::RecordBatch;
use async_trait::async_trait;

use crate::stream::{JobError, Sink};

pub struct BlackholeSink;

#[async_trait]
impl Sink for BlackholeSink {
    async fn write(&mut self, _batch: RecordBatch) -> Result<(), JobError> {
        Ok(())
    }
    async fn flush(&mut self) -> Result<(), JobError> {
        Ok(())
    }
    async fn finish(&mut self) -> Result<(), JobError> {
        Ok(())
    }
}
