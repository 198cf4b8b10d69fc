//! What a source connector hands its rows to: the table projection (computed columns), the
//! watermark tracker and the fan-out to every pipeline reading the table.
//!
//! Connectors only turn bytes into scan batches; everything Flink's table source does beyond
//! that happens here, the same way for every connector.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use tokio::sync::{mpsc, watch};

use super::metrics::SourceMetrics;
use super::watermark::WatermarkTracker;
use super::{JobError, Message};
use crate::operators::Projection;
use crate::sql::catalog::Table;

/// How a source's `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEnd {
    /// All input was read (bounded source): event time jumps to +∞ so every window closes.
    Exhausted,
    /// The job was asked to stop: no final watermark, open windows stay open.
    Stopped,
}

pub struct SourceOutput {
    table: Arc<Table>,
    row_projection: Option<Projection>,
    watermarks: Option<WatermarkTracker>,
    outputs: Vec<mpsc::Sender<Message>>,
    metrics: Arc<SourceMetrics>,
    stop: watch::Receiver<bool>,
    pub batch_size: usize,
    pub linger: Duration,
}

impl SourceOutput {
    pub(crate) fn new(
        table: Arc<Table>,
        outputs: Vec<mpsc::Sender<Message>>,
        metrics: Arc<SourceMetrics>,
        stop: watch::Receiver<bool>,
        batch_size: usize,
        linger: Duration,
        default_idle_timeout: Option<Duration>,
    ) -> Self {
        let row_projection = (!table.row_is_scan())
            .then(|| Projection::new(table.row_exprs.clone(), table.row_schema.clone()));
        let idle = table.connector.idle_timeout().or(default_idle_timeout);
        let watermarks = table
            .watermark
            .as_ref()
            .map(|w| WatermarkTracker::new(w.expr.clone(), idle));
        SourceOutput {
            table,
            row_projection,
            watermarks,
            outputs,
            metrics,
            stop,
            batch_size,
            linger,
        }
    }

    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    pub fn metrics(&self) -> &Arc<SourceMetrics> {
        &self.metrics
    }

    /// True once the job has been asked to stop.
    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves when the job is asked to stop (use in `select!` next to reading).
    pub async fn stopped(&mut self) {
        while !*self.stop.borrow() {
            if self.stop.changed().await.is_err() {
                // The job dropped its stop handle: nobody can ask us to stop any more.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Declares how many splits (partitions, files) the source reads, for watermarks.
    pub fn set_splits(&mut self, n: usize) {
        if let Some(w) = &mut self.watermarks {
            w.ensure_splits(n);
        }
    }

    /// Counts records skipped as bad (already logged by the decoder).
    pub fn count_bad_records(&self, n: usize) {
        self.metrics.bad_records.fetch_add(n as u64, Relaxed);
    }

    /// Sends a batch of scan rows read from `split` downstream, with the watermark it advances.
    pub async fn emit(&mut self, split: usize, scan: RecordBatch) -> Result<(), JobError> {
        if scan.num_rows() == 0 {
            return Ok(());
        }
        self.metrics
            .rows_in
            .fetch_add(scan.num_rows() as u64, Relaxed);
        let row = match &self.row_projection {
            Some(p) => p.project(&scan)?,
            None => scan.with_schema(self.table.row_schema.clone())?,
        };
        let watermark = match &mut self.watermarks {
            Some(w) => w.observe(split, &row, Instant::now())?,
            None => None,
        };
        self.send(Message::Batch(row)).await?;
        if let Some(w) = watermark {
            self.send_watermark(w).await?;
        }
        Ok(())
    }

    /// Re-checks idle splits; call periodically when no data arrives.
    pub async fn tick(&mut self) -> Result<(), JobError> {
        let advanced = self
            .watermarks
            .as_mut()
            .and_then(|w| w.advance(Instant::now()));
        if let Some(w) = advanced {
            self.send_watermark(w).await?;
        }
        Ok(())
    }

    async fn send_watermark(&mut self, w: i64) -> Result<(), JobError> {
        self.metrics.watermark.store(w, Relaxed);
        self.send(Message::Watermark(w)).await
    }

    async fn send(&mut self, msg: Message) -> Result<(), JobError> {
        // Batches are reference-counted Arrow arrays: a clone per output copies no data.
        for out in &self.outputs {
            out.send(msg.clone())
                .await
                .map_err(|_| JobError::ChannelClosed)?;
        }
        Ok(())
    }

    /// Ends the stream: a final +∞ watermark when the input is exhausted, then `EndOfInput`.
    pub(crate) async fn finish(mut self, end: SourceEnd) -> Result<(), JobError> {
        if end == SourceEnd::Exhausted && self.watermarks.is_some() {
            self.send_watermark(i64::MAX).await?;
        }
        self.send(Message::EndOfInput).await
    }
}
