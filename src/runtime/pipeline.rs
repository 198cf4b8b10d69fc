//! One pipeline's task: its operators, fused, and its sinks. It reacts to what its source sends:
//! batches, watermarks, checkpoint barriers (snapshot the operators, stage the sinks' rows,
//! report) and the end of input; and to checkpoints completing (write the staged rows).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use arrow::array::RecordBatch;
use tokio::sync::mpsc;

use super::coordinator::{CheckpointLink, PipelineSnapshot, Report, StagedSink, encode_batches};
use super::metrics::SinkMetrics;
use crate::checkpoint::CheckpointMode;
use crate::operators::FusedOperators;
use crate::plan::SinkNode;
use crate::stream::{JobError, Message, Sink, WatermarkCell};

/// The operators of one INSERT (or of several INSERTs of one query) and its sinks, in one task.
pub(super) struct PipelineTask {
    pub operators: FusedOperators,
    pub sinks: Vec<SinkOutput>,
    pub metrics: Arc<SinkMetrics>,
    pub flush_interval: Duration,
    pub watermark: WatermarkCell,
    /// Where late rows go.
    pub side_output: Option<SinkOutput>,
    pub checkpoints: Option<PipelineCheckpoints>,
}

/// A pipeline's part in checkpoints.
pub(super) struct PipelineCheckpoints {
    pub index: usize,
    pub link: CheckpointLink,
    /// Stable id of each operator that keeps state (`None` for the others).
    pub operator_ids: Vec<Option<String>>,
    /// The epoch of the last barrier seen.
    pub last_barrier: u64,
}

/// A sink with its declared schema and name, and the rows it holds for checkpoints.
pub(super) struct SinkOutput {
    sink: Box<dyn Sink>,
    schema: arrow::datatypes::SchemaRef,
    name: String,
    /// Stable id in checkpoints.
    id: String,
    /// True when rows wait for their checkpoint to complete (exactly-once).
    holds_epochs: bool,
    /// Rows since the last barrier.
    current: Vec<RecordBatch>,
    /// Rows of epochs whose checkpoint has not completed yet.
    staged: BTreeMap<u64, Vec<RecordBatch>>,
}

impl SinkOutput {
    /// Creates and opens the sink. `writer` names it for deduplication (see [`Sink::open`]).
    pub async fn open(
        node: &SinkNode,
        id: String,
        writer: &str,
        mode: Option<CheckpointMode>,
    ) -> Result<Self, JobError> {
        let mut sink = node.connector.create_sink(&node.table, &node.schema)?;
        sink.open(writer).await?;
        let holds_epochs = mode == Some(CheckpointMode::ExactlyOnce) && sink.writes_epochs();
        Ok(SinkOutput {
            sink,
            schema: node.schema.clone(),
            name: node.table.clone(),
            id,
            holds_epochs,
            current: Vec::new(),
            staged: BTreeMap::new(),
        })
    }

    /// The sink's stable id in checkpoints.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Writes `batch` under the sink's declared names and nullability; a NULL in a NOT NULL
    /// column fails here with the column named.
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), JobError> {
        let b = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| JobError::sink(&self.name, e.to_string()))?;
        if self.holds_epochs {
            self.current.push(b);
            Ok(())
        } else {
            self.sink.write(b).await
        }
    }

    /// At a barrier: the rows since the last one belong to `epoch`; a sink that writes at once
    /// flushes instead, so everything before the barrier is stored when the checkpoint is.
    async fn barrier(&mut self, epoch: u64) -> Result<(), JobError> {
        if self.holds_epochs {
            if !self.current.is_empty() {
                self.staged.insert(epoch, std::mem::take(&mut self.current));
            }
            Ok(())
        } else {
            self.sink.barrier().await
        }
    }

    /// The rows of every epoch not yet committed, for the checkpoint.
    fn staged(&self) -> Result<StagedSink, JobError> {
        let epochs = self
            .staged
            .iter()
            .map(|(epoch, batches)| {
                let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                Ok((*epoch, rows, encode_batches(batches)?))
            })
            .collect::<Result<_, JobError>>()?;
        Ok(StagedSink {
            id: self.id.clone(),
            table: self.name.clone(),
            epochs,
        })
    }

    /// Writes the staged rows of every epoch up to `completed`, oldest first.
    async fn commit(&mut self, completed: u64) -> Result<(), JobError> {
        while let Some(entry) = self.staged.first_entry() {
            if *entry.key() > completed {
                break;
            }
            let (epoch, batches) = entry.remove_entry();
            self.sink.write_epoch(epoch, &batches).await?;
        }
        Ok(())
    }

    /// Writes staged epochs restored from a checkpoint (they completed; their write may not
    /// have): the sink's writes are idempotent, so what was stored already is not stored again.
    pub async fn recommit(&mut self, epochs: Vec<(u64, Vec<RecordBatch>)>) -> Result<(), JobError> {
        for (epoch, batches) in epochs {
            if self.holds_epochs {
                self.sink.write_epoch(epoch, &batches).await?;
            } else {
                for b in batches {
                    self.sink.write(b).await?;
                }
                self.sink.flush().await?;
            }
        }
        Ok(())
    }
}

impl PipelineTask {
    pub async fn run(mut self, mut rx: mpsc::Receiver<Message>) -> Result<(), JobError> {
        let mut flush = tokio::time::interval(self.flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut completed = self.checkpoints.as_ref().map(|c| c.link.completed.clone());
        self.metrics
            .queue_capacity
            .store(rx.max_capacity() as u64, Relaxed);
        loop {
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = flush.tick() => {
                    self.flush_all().await?;
                    continue;
                }
                changed = async { completed.as_mut().expect("guarded").changed().await }, if completed.is_some() => {
                    if changed.is_err() {
                        // The coordinator ended (the job is failing); its error is reported.
                        completed = None;
                        continue;
                    }
                    let epoch = *completed.as_ref().expect("guarded").borrow();
                    self.commit(epoch).await?;
                    continue;
                }
            };
            match msg {
                Some(Message::Batch(batch)) => {
                    self.metrics.queued_batches.store(rx.len() as u64, Relaxed);
                    let out = self.operators.process_batch(batch)?;
                    self.metrics
                        .late_rows
                        .store(self.operators.late_rows(), Relaxed);
                    self.write(out).await?;
                    self.write_side_output().await?;
                }
                // A restored pipeline may be sent watermarks below the one it restored while
                // its source catches up: event time never goes back.
                Some(Message::Watermark(w)) if w <= self.watermark.load(Relaxed) => {}
                Some(Message::Watermark(w)) => {
                    self.watermark.store(w, Relaxed);
                    let out = self.operators.process_watermark(w)?;
                    self.metrics
                        .buffered_rows
                        .store(self.operators.buffered_rows(), Relaxed);
                    self.write(out).await?;
                }
                Some(Message::Barrier(b)) => self.barrier(b.epoch).await?,
                Some(Message::EndOfInput) => return self.finish().await,
                // The source failed or was torn down; its task reports why.
                None => return Err(JobError::ChannelClosed),
            }
        }
    }

    fn outputs(&mut self) -> impl Iterator<Item = &mut SinkOutput> {
        self.sinks.iter_mut().chain(self.side_output.as_mut())
    }

    async fn barrier(&mut self, epoch: u64) -> Result<(), JobError> {
        for s in self.outputs() {
            s.barrier(epoch).await?;
        }
        let Some(c) = &mut self.checkpoints else {
            return Ok(());
        };
        c.last_barrier = epoch;
        let snapshots = self.operators.snapshot()?;
        let mut operators = Vec::new();
        for ((op, id), bytes) in self
            .operators
            .operators()
            .iter()
            .zip(&c.operator_ids)
            .zip(snapshots)
        {
            if let (Some(id), Some(bytes)) = (id, bytes) {
                operators.push((id.clone(), op.describe(), bytes));
            }
        }
        let sinks = self
            .sinks
            .iter()
            .chain(self.side_output.as_ref())
            .map(SinkOutput::staged)
            .collect::<Result<_, _>>()?;
        let state = PipelineSnapshot {
            watermark: self.watermark.load(Relaxed),
            operators,
            sinks,
        };
        let _ = c.link.reports.send(Report::Pipeline {
            index: c.index,
            epoch,
            state,
        });
        Ok(())
    }

    async fn commit(&mut self, completed: u64) -> Result<(), JobError> {
        for s in self.outputs() {
            s.commit(completed).await?;
        }
        Ok(())
    }

    /// The input ended: once the final checkpoint (placed by the source just before) is
    /// complete, its rows are written and the sinks closed.
    async fn finish(mut self) -> Result<(), JobError> {
        if let Some(c) = &mut self.checkpoints {
            let last = c.last_barrier;
            let completed = c.link.completion_of(last).await?;
            let _ = c.link.reports.send(Report::PipelineFinished(c.index));
            self.commit(completed).await?;
        }
        for s in self.outputs() {
            s.sink.finish().await?;
        }
        Ok(())
    }

    async fn flush_all(&mut self) -> Result<(), JobError> {
        for s in self.outputs().filter(|s| !s.holds_epochs) {
            s.sink.flush().await?;
        }
        Ok(())
    }

    async fn write_side_output(&mut self) -> Result<(), JobError> {
        let Some(side) = &mut self.side_output else {
            return Ok(());
        };
        for b in self.operators.take_side_output() {
            side.write(&b).await?;
        }
        Ok(())
    }

    async fn write(&mut self, batches: Vec<RecordBatch>) -> Result<(), JobError> {
        for b in batches {
            let rows = b.num_rows();
            if rows == 0 {
                continue;
            }
            for s in &mut self.sinks {
                s.write(&b).await?;
                self.metrics.rows_out.fetch_add(rows as u64, Relaxed);
            }
        }
        Ok(())
    }
}
