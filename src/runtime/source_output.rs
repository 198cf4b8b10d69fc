//! What a source connector hands its rows to: the table projection (computed columns), the
//! event-time check, the watermark tracker and the fan-out to every pipeline reading the table.
//!
//! Connectors only turn bytes into scan batches; everything Flink's table source does beyond
//! that happens here, the same way for every connector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch};
use arrow::compute::filter_record_batch;
use async_trait::async_trait;
use tokio::sync::watch;

use super::coordinator::{CheckpointLink, Report};
use super::exchange::{KeyRouter, PipelineInput};
use super::restore::RestoredSource;
use super::watermark::WatermarkTracker;
use crate::checkpoint::manifest::SplitWatermarks;
use crate::connectors::print::format_rows;
use crate::operators::Projection;
use crate::plan::SourceNode;
use crate::stream::changelog::{
    RowKind, is_changelog, row_kinds, with_kinds_column, without_kinds,
};
use crate::stream::metrics::SourceMetrics;
use crate::stream::{
    CheckpointBarrier, JobError, Message, Position, Positions, SourceEnd, SourceOutput,
};

/// The runtime's [`SourceOutput`] for one table.
pub struct TableOutput {
    table: String,
    row_projection: Option<Projection>,
    row_schema: arrow::datatypes::SchemaRef,
    /// The event-time column (index into the row), when the table has a watermark.
    rowtime: Option<(usize, String)>,
    /// When the table's format fails on bad records: the option that would skip them. `None`:
    /// bad rows are skipped and counted (the format says so, or a generator has no format).
    fails_on_bad_rows: Option<&'static str>,
    watermarks: Option<WatermarkTracker>,
    /// Whether the source said it is idle (every split past its idle timeout).
    idle: bool,
    outputs: Vec<PipelineInput>,
    metrics: Arc<SourceMetrics>,
    stop: watch::Receiver<bool>,
    batch_size: usize,
    linger: Duration,
    /// Where the source stands: the positions of what it has sent downstream.
    positions: Positions,
    restored: Positions,
    /// Split watermarks of the restored checkpoint, by split key: taken back by the splits of
    /// those keys, and kept for the splits this run never names.
    restored_watermarks: SplitWatermarks,
    /// Each split's position key, as the source named it (by index).
    split_keys: Vec<Option<Arc<str>>>,
    checkpoints: Option<SourceCheckpoints>,
    /// On a stop, end event time first so every window is emitted (`--drain`).
    drain: Arc<AtomicBool>,
}

/// A source's part in checkpoints.
struct SourceCheckpoints {
    index: usize,
    link: CheckpointLink,
    /// The newest epoch this source placed a barrier for.
    placed: u64,
    /// Positions at each barrier placed and not yet known complete.
    placed_positions: BTreeMap<u64, Positions>,
    /// The newest completed epoch already handed to `take_committed`.
    committed: u64,
}

impl TableOutput {
    /// `idle_timeout`: the source's own, else the job's default.
    pub(crate) fn new(
        node: &SourceNode,
        idle_timeout: Option<Duration>,
        outputs: Vec<PipelineInput>,
        metrics: Arc<SourceMetrics>,
        stop: watch::Receiver<bool>,
        batch_size: usize,
        linger: Duration,
    ) -> Self {
        let row_projection = node
            .row_exprs
            .as_ref()
            .map(|exprs| Projection::new(exprs.clone(), node.row_schema.clone()));
        TableOutput {
            table: node.table.clone(),
            row_projection,
            row_schema: node.row_schema.clone(),
            rowtime: node
                .watermark
                .as_ref()
                .map(|w| (w.column_index, w.column.clone())),
            fails_on_bad_rows: node
                .connector
                .format()
                .filter(|f| !f.ignores_parse_errors())
                .map(|f| f.ignore_errors_option()),
            watermarks: if node.connector.carries_watermarks() {
                Some(WatermarkTracker::from_records())
            } else {
                node.watermark
                    .as_ref()
                    .map(|w| WatermarkTracker::new(w.expr.clone(), idle_timeout))
            },
            idle: false,
            outputs,
            metrics,
            stop,
            batch_size,
            linger,
            positions: Positions::new(),
            restored: Positions::new(),
            restored_watermarks: SplitWatermarks::new(),
            split_keys: Vec::new(),
            checkpoints: None,
            drain: Arc::default(),
        }
    }

    /// Makes this output place checkpoint barriers as source `index` of the job, starting from
    /// where the `restored` checkpoint left it.
    pub(crate) fn with_checkpoints(
        mut self,
        index: usize,
        link: CheckpointLink,
        restored: RestoredSource,
    ) -> Self {
        let placed = *link.completed.borrow();
        self.positions = restored.positions.clone();
        self.restored = restored.positions;
        self.restored_watermarks = restored.watermarks;
        self.checkpoints = Some(SourceCheckpoints {
            index,
            link,
            placed,
            placed_positions: BTreeMap::new(),
            committed: placed,
        });
        self
    }

    /// On a stop, emits every window first (`--drain`) instead of keeping them in state.
    pub(crate) fn with_drain(mut self, drain: Arc<AtomicBool>) -> Self {
        self.drain = drain;
        self
    }

    /// Places a barrier when a checkpoint newer than the last one placed was requested.
    async fn place_requested_barrier(&mut self) -> Result<(), JobError> {
        let Some(c) = &self.checkpoints else {
            return Ok(());
        };
        let requested = *c.link.requested.borrow();
        if requested > c.placed {
            self.place_barrier(requested, false).await?;
        }
        Ok(())
    }

    /// Sends barrier `epoch` downstream and reports the positions before it; `last` when the
    /// source ends after it.
    async fn place_barrier(&mut self, epoch: u64, last: bool) -> Result<(), JobError> {
        self.send(Message::Barrier(CheckpointBarrier { epoch }))
            .await?;
        let c = self.checkpoints.as_mut().expect("checkpointing");
        c.placed = epoch;
        c.placed_positions.insert(epoch, self.positions.clone());
        // Each split's watermark by its key, so it moves with its position.
        let mut watermarks = self.restored_watermarks.clone();
        if let Some(w) = &self.watermarks {
            for (split, watermark) in w.split_watermarks() {
                if let Some(Some(key)) = self.split_keys.get(split) {
                    watermarks.insert(key.to_string(), watermark);
                }
            }
        }
        // A closed report channel means the coordinator is gone: the job is ending anyway.
        let _ = c.link.reports.send(Report::Source {
            index: c.index,
            epoch,
            positions: self.positions.clone(),
            watermarks,
            last,
        });
        Ok(())
    }

    /// Remembers that split `split` is named `key`.
    fn name_split(&mut self, split: usize, key: &Arc<str>) {
        if self.split_keys.len() <= split {
            self.split_keys.resize(split + 1, None);
        }
        if self.split_keys[split].is_none() {
            self.split_keys[split] = Some(key.clone());
        }
    }

    /// Rows whose event time is NULL cannot be placed in time: with parse errors ignored (or from
    /// a generator) they are skipped and counted, else the job fails naming the row. (Records missing the field
    /// are already caught by the decoder; this catches event times computed to NULL.)
    fn drop_rows_without_event_time(
        &self,
        split: usize,
        row: RecordBatch,
    ) -> Result<RecordBatch, JobError> {
        let Some((index, name)) = &self.rowtime else {
            return Ok(row);
        };
        let times = row.column(*index);
        if times.null_count() == 0 {
            return Ok(row);
        }
        // A delete of an upsert source carries only its key: it needs no time.
        let kinds = row_kinds(&row);
        let missing = |i: usize| times.is_null(i) && kinds[i] != RowKind::Delete;
        let bad = (0..row.num_rows()).filter(|&i| missing(i)).count();
        let Some(first) = (0..row.num_rows()).find(|&i| missing(i)) else {
            return Ok(row);
        };
        let record = format_rows(&row.slice(first, 1), "")?;
        let record = record.trim_end();
        if let Some(option) = self.fails_on_bad_rows {
            return Err(JobError::BadRecord {
                location: format!("table `{}`, split {split}", self.table),
                reason: format!("the event-time column `{name}` is NULL"),
                record: record.to_string(),
                option: option.to_string(),
            });
        }
        let total = self.metrics.bad_records.fetch_add(bad as u64, Relaxed) + bad as u64;
        tracing::warn!(table = %self.table, split, column = %name, %record, skipped_so_far = total, "skipping rows whose event time is NULL");
        let keep: arrow::array::BooleanArray =
            (0..row.num_rows()).map(|i| Some(!missing(i))).collect();
        Ok(filter_record_batch(&row, &keep)?)
    }

    async fn send_watermark(&mut self, w: i64) -> Result<(), JobError> {
        self.metrics.watermark.store(w, Relaxed);
        self.send(Message::Watermark(w)).await
    }

    /// Sends everything but rows to every subtask of every pipeline.
    async fn send(&mut self, msg: Message) -> Result<(), JobError> {
        for out in &self.outputs {
            out.send_each(&msg).await?;
        }
        Ok(())
    }

    /// Sends rows of split `split` to the subtasks they belong to.
    async fn send_batch(&mut self, split: usize, batch: RecordBatch) -> Result<(), JobError> {
        // Batches are reference-counted Arrow arrays: a clone per output copies no data. Pipelines
        // spread by the same key (the alert rules of one table, say) share one split.
        let mut parted: Vec<(&KeyRouter, Vec<Option<RecordBatch>>)> = Vec::new();
        for out in &self.outputs {
            match &out.router {
                Some(router) => {
                    let parts = match parted.iter().find(|(r, _)| *r == router) {
                        Some((_, parts)) => parts.clone(),
                        None => {
                            let parts = router.split(&batch)?;
                            parted.push((router, parts.clone()));
                            parts
                        }
                    };
                    out.send_parts(parts).await?;
                }
                None => out.send_rows(split, batch.clone()).await?,
            }
        }
        Ok(())
    }

    /// Ends the stream: a final +∞ watermark when the input is exhausted (or the stop drains),
    /// a barrier for a final checkpoint (a savepoint when stopped) so sinks commit everything,
    /// then `EndOfInput`.
    pub(crate) async fn finish(mut self, end: SourceEnd) -> Result<(), JobError> {
        let drain = end == SourceEnd::Stopped && self.drain.load(Relaxed);
        if (end == SourceEnd::Exhausted || drain) && self.watermarks.is_some() {
            self.send_watermark(i64::MAX).await?;
        }
        if let Some(c) = &self.checkpoints {
            let epoch = c.link.request_after(c.placed);
            self.place_barrier(epoch, true).await?;
        }
        let stopped = end == SourceEnd::Stopped && !drain;
        self.send(Message::EndOfInput { stopped }).await
    }
}

#[async_trait]
impl SourceOutput for TableOutput {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn linger(&self) -> Duration {
        self.linger
    }

    fn metrics(&self) -> &Arc<SourceMetrics> {
        &self.metrics
    }

    fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    async fn stopped(&mut self) {
        while !*self.stop.borrow() {
            if self.stop.changed().await.is_err() {
                // The job dropped its stop handle: nobody can ask us to stop any more.
                std::future::pending::<()>().await;
            }
        }
    }

    fn set_splits(&mut self, n: usize) {
        if let Some(w) = &mut self.watermarks {
            w.ensure_splits(n);
        }
    }

    fn count_bad_records(&self, n: usize) {
        self.metrics.bad_records.fetch_add(n as u64, Relaxed);
    }

    fn name_splits(&mut self, keys: &[Arc<str>]) {
        for (split, key) in keys.iter().enumerate() {
            self.name_split(split, key);
            if let (Some(w), Some(&restored)) =
                (&mut self.watermarks, self.restored_watermarks.get(&**key))
            {
                w.restore(split, restored);
            }
        }
    }

    fn restored(&self) -> &Positions {
        &self.restored
    }

    fn checkpointing(&self) -> bool {
        self.checkpoints.is_some()
    }

    fn take_committed(&mut self) -> Option<Positions> {
        let c = self.checkpoints.as_mut()?;
        let completed = *c.link.completed.borrow();
        if completed <= c.committed {
            return None;
        }
        c.committed = completed;
        let newer = c.placed_positions.split_off(&(completed + 1));
        let done = std::mem::replace(&mut c.placed_positions, newer);
        done.into_iter().next_back().map(|(_, p)| p)
    }

    async fn emit(
        &mut self,
        split: usize,
        scan: RecordBatch,
        position: Position,
    ) -> Result<(), JobError> {
        self.place_requested_barrier().await?;
        self.name_split(split, &position.key);
        self.send_rows(split, scan).await?;
        if self.checkpoints.is_some() {
            self.positions
                .insert(position.key.to_string(), position.next);
        }
        Ok(())
    }

    async fn emit_watermark(&mut self, split: usize, watermark: i64) -> Result<(), JobError> {
        self.place_requested_barrier().await?;
        let Some(tracker) = &mut self.watermarks else {
            return Ok(());
        };
        if let Some(w) = tracker.raise(split, watermark, Instant::now()) {
            self.send_watermark(w).await?;
        }
        Ok(())
    }

    async fn tick(&mut self) -> Result<(), JobError> {
        self.place_requested_barrier().await?;
        let now = Instant::now();
        let advanced = self.watermarks.as_mut().and_then(|w| w.advance(now));
        if let Some(w) = advanced {
            self.send_watermark(w).await?;
        }
        let idle = self.watermarks.as_ref().is_some_and(|w| w.all_idle(now));
        if idle && !self.idle {
            self.send(Message::Idle).await?;
        }
        self.idle = idle;
        Ok(())
    }
}

impl TableOutput {
    /// Projects, checks and sends one scan batch with the watermark it advances.
    async fn send_rows(&mut self, split: usize, scan: RecordBatch) -> Result<(), JobError> {
        if scan.num_rows() == 0 {
            return Ok(());
        }
        self.metrics
            .rows_in
            .fetch_add(scan.num_rows() as u64, Relaxed);
        // Rows make it active again for the pipelines (they see the batch).
        self.idle = false;
        // An upsert source's batches carry row kinds: the columns are computed without them,
        // and they are put back after.
        let changelog = is_changelog(&scan.schema());
        let payload = without_kinds(&scan);
        let row = match &self.row_projection {
            Some(p) => p.project(&payload)?,
            // (An upsert batch's fields are all nullable: its columns are checked instead.)
            None if changelog => {
                RecordBatch::try_new(self.row_schema.clone(), payload.columns().to_vec())?
            }
            None => payload.with_schema(self.row_schema.clone())?,
        };
        let row = if changelog {
            with_kinds_column(&row, scan.column(scan.num_columns() - 1).clone())?
        } else {
            row
        };
        let row = self.drop_rows_without_event_time(split, row)?;
        if row.num_rows() == 0 {
            return Ok(());
        }
        let watermark = match &mut self.watermarks {
            Some(w) => w.observe(split, &row, Instant::now())?,
            None => None,
        };
        self.send_batch(split, row).await?;
        if let Some(w) = watermark {
            self.send_watermark(w).await?;
        }
        Ok(())
    }
}
