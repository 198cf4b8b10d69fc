//! `collect`: a query's rows handed to the process that runs it (the shell's live result view)
//! over a bounded channel, so a slow reader slows the query instead of buffering without end.
//! Not a connector a table can name: the shell puts it in place of a query's print sink.

use arrow::array::RecordBatch;
use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::stream::{JobError, Sink};

#[derive(Clone)]
pub struct CollectConfig {
    pub rows: mpsc::Sender<RecordBatch>,
}

impl std::fmt::Debug for CollectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CollectConfig")
    }
}

pub struct CollectSink {
    rows: mpsc::Sender<RecordBatch>,
}

impl CollectSink {
    pub fn new(config: CollectConfig) -> Self {
        CollectSink { rows: config.rows }
    }
}

#[async_trait]
impl Sink for CollectSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), JobError> {
        // A reader that went away (the view closed) only means nobody looks any more.
        let _ = self.rows.send(batch).await;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), JobError> {
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), JobError> {
        Ok(())
    }
}
