//! One pipeline's task: its operators, fused, and its sinks. It reacts to what its source sends:
//! batches, watermarks, checkpoint barriers (snapshot the operators, stage the sinks' rows,
//! report) and the end of input; and to checkpoints completing (write the staged rows, and a
//! repartition topic's held records).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use arrow::array::RecordBatch;
use tokio::sync::mpsc;

use super::coordinator::{CheckpointLink, PipelineSnapshot, Report, StagedSink};
use super::exchange::NextStage;
use super::metrics::SinkMetrics;
use super::mini_batch::HeldBatches;
use crate::checkpoint::CheckpointMode;
use crate::operators::FusedOperators;
use crate::plan::{STAGE_INPUT, SinkNode};
use crate::stream::ipc::encode_batches;
use crate::stream::metrics::GaugeShare;
use crate::stream::{JobError, Message, Sink, WatermarkCell};

/// The operators of one INSERT (or of several INSERTs of one query) and its sinks, in one task.
pub(super) struct PipelineTask {
    pub operators: FusedOperators,
    pub sinks: Vec<SinkOutput>,
    pub metrics: Arc<SinkMetrics>,
    pub flush_interval: Duration,
    /// This task's watermark.
    pub watermark: WatermarkCell,
    /// For a subtask of a parallel pipeline: the pipeline's cell (what CURRENT_WATERMARK
    /// reads) and every subtask's. The pipeline's is the lowest of them: every subtask has
    /// passed it.
    pub pipeline_watermark: Option<(WatermarkCell, Vec<WatermarkCell>)>,
    /// This task's part of the pipeline's gauges: late rows, held rows, queued batches.
    pub shares: [GaugeShare; 3],
    /// Where late rows go.
    pub side_output: Option<SinkOutput>,
    pub checkpoints: Option<PipelineCheckpoints>,
    /// Batches held for a mini-batch (`None`: each goes on as it comes).
    pub mini_batch: Option<HeldBatches>,
    /// A first stage's subtask hands its rows, watermarks, barriers and end to the second
    /// stage's subtasks (it has no sinks).
    pub next_stage: Option<NextStage>,
}

/// One input channel of a pipeline: the source it carries and where that source stands.
pub(super) struct Input {
    source: usize,
    rx: mpsc::Receiver<Message>,
    watermark: i64,
    /// The epoch of a barrier delivered and not yet aligned: the input waits.
    barrier: Option<u64>,
    /// Its source said it is idle and has sent nothing since.
    idle: bool,
    ended: bool,
    /// It ended because the job stops: its watermark still holds (see [`Message::EndOfInput`]).
    stopped: bool,
}

impl Input {
    /// Whether its watermark holds the pipeline's back. An input read to its end never; a
    /// stopped one still does, at what it reached; an idle source's not while it is idle. A
    /// first stage's subtask always does: every subtask of a first stage is fed by the same
    /// sources, so they go idle together, and when the sources come back one subtask may pass
    /// the new watermark on before another has sent the rows that came before it (a local
    /// phase's partial states), which would then be late.
    fn holds_watermark(&self) -> bool {
        let read_to_its_end = self.ended && !self.stopped;
        !read_to_its_end && (!self.idle || self.source == STAGE_INPUT)
    }
}

/// The next message of an input that is neither waiting at a barrier nor ended, with the
/// input's index.
async fn next_message(inputs: &mut [Input]) -> (usize, Option<Message>) {
    if let [only] = inputs {
        return (0, only.rx.recv().await);
    }
    let pending = inputs
        .iter_mut()
        .enumerate()
        .filter(|(_, i)| !i.ended && i.barrier.is_none())
        .map(|(k, i)| Box::pin(async move { (k, i.rx.recv().await) }));
    let pending: Vec<_> = pending.collect();
    if pending.is_empty() {
        // Every running input waits at a barrier: alignment happens as their barriers come in,
        // so this is not reached; wait forever rather than spin.
        return std::future::pending().await;
    }
    futures::future::select_all(pending).await.0
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

    /// Closes a sink opened only to write staged epochs again.
    pub async fn close(mut self) -> Result<(), JobError> {
        self.sink.finish().await
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
    /// Runs until every input has ended. `inputs` are the sources it reads with their channels:
    /// one, or two for a join of two tables. With several, a batch goes to the operators reading
    /// its source, the watermark is the lowest of the inputs' (an ended input no longer holds
    /// it back), and barriers are aligned: an input that delivered a barrier is not read again
    /// until every input still running has delivered one too — then the pipeline takes the
    /// newest of those epochs (an older one is superseded) and reads on.
    pub async fn run(
        mut self,
        inputs: Vec<(usize, mpsc::Receiver<Message>)>,
    ) -> Result<(), JobError> {
        let mut flush = tokio::time::interval(self.flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut completed = self.checkpoints.as_ref().map(|c| c.link.completed.clone());
        let single = inputs.len() == 1;
        let mut inputs: Vec<Input> = inputs
            .into_iter()
            .map(|(source, rx)| Input {
                source,
                rx,
                watermark: i64::MIN,
                barrier: None,
                idle: false,
                ended: false,
                stopped: false,
            })
            .collect();
        let capacity: usize = inputs.iter().map(|i| i.rx.max_capacity()).sum();
        self.metrics
            .queue_capacity
            .fetch_add(capacity as u64, Relaxed);
        // Fires when held mini-batch rows are due; armed only while some are held.
        let due = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(due);
        loop {
            let deadline = self.mini_batch.as_ref().and_then(HeldBatches::deadline);
            if let Some(d) = deadline
                && d != due.deadline()
            {
                due.as_mut().reset(d);
            }
            let (k, msg) = tokio::select! {
                next = next_message(&mut inputs) => next,
                _ = &mut due, if deadline.is_some() => {
                    self.release_held(&inputs).await?;
                    continue;
                }
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
            if matches!(msg, Some(Message::Barrier(_) | Message::EndOfInput { .. })) {
                // Checkpoints and ends take every row received before them.
                self.release_held(&inputs).await?;
            }
            match msg {
                Some(Message::Batch(batch)) => {
                    inputs[k].idle = false;
                    let queued: usize = inputs.iter().map(|i| i.rx.len()).sum();
                    self.shares[2].set(&self.metrics.queued_batches, queued as u64);
                    match &mut self.mini_batch {
                        Some(held) => {
                            if held.hold(k, batch) {
                                self.release_held(&inputs).await?;
                            }
                        }
                        None => self.process(&inputs, single, k, batch).await?,
                    }
                }
                Some(Message::Watermark(w)) => {
                    inputs[k].idle = false;
                    inputs[k].watermark = inputs[k].watermark.max(w);
                    // Held rows came before it: it follows them when they go.
                    if !self.holds_rows() {
                        self.advance_watermark(&inputs).await?;
                    }
                }
                Some(Message::Idle) => {
                    inputs[k].idle = true;
                    if !self.holds_rows() {
                        self.advance_watermark(&inputs).await?;
                    }
                    if let Some(next) = &mut self.next_stage
                        && inputs.iter().filter(|i| !i.ended).all(|i| i.idle)
                    {
                        next.idle().await?;
                    }
                }
                Some(Message::Barrier(b)) => {
                    inputs[k].barrier = Some(b.epoch);
                    self.align(&mut inputs).await?;
                }
                Some(Message::EndOfInput { stopped }) => {
                    inputs[k].ended = true;
                    inputs[k].stopped = stopped;
                    if inputs.iter().all(|i| i.ended) {
                        return self.finish(inputs.iter().any(|i| i.stopped)).await;
                    }
                    self.advance_watermark(&inputs).await?;
                    self.align(&mut inputs).await?;
                }
                // The source failed or was torn down; its task reports why.
                None => return Err(JobError::ChannelClosed),
            }
        }
    }

    /// Hands `batch` of input `k` to the operators and writes what they give.
    async fn process(
        &mut self,
        inputs: &[Input],
        single: bool,
        k: usize,
        batch: RecordBatch,
    ) -> Result<(), JobError> {
        let out = if single {
            self.operators.process_batch(batch)?
        } else {
            self.operators.process_input(inputs[k].source, batch)?
        };
        let late = self.operators.late_rows();
        self.shares[0].set(&self.metrics.late_rows, late);
        self.write(out).await?;
        self.write_side_output().await
    }

    /// Whether rows wait for a mini-batch (watermarks then wait with them).
    fn holds_rows(&self) -> bool {
        self.mini_batch
            .as_ref()
            .is_some_and(|h| h.deadline().is_some())
    }

    /// Processes the rows held for a mini-batch, if any (one batch per input), then the
    /// watermark that waited for them.
    async fn release_held(&mut self, inputs: &[Input]) -> Result<(), JobError> {
        let Some(held) = &mut self.mini_batch else {
            return Ok(());
        };
        if held.deadline().is_none() {
            return Ok(());
        }
        let single = inputs.len() == 1;
        for (k, batch) in held.take()? {
            self.process(inputs, single, k, batch).await?;
        }
        self.advance_watermark(inputs).await
    }

    /// Processes the lowest watermark of the inputs that hold it back
    /// ([`Input::holds_watermark`]) when it advances (when none does, nothing advances). A restored pipeline may be sent
    /// watermarks below the one it restored while its source catches up: event time never goes
    /// back.
    async fn advance_watermark(&mut self, inputs: &[Input]) -> Result<(), JobError> {
        let Some(w) = inputs
            .iter()
            .filter(|i| i.holds_watermark())
            .map(|i| i.watermark)
            .min()
        else {
            return Ok(());
        };
        if w <= self.watermark.load(Relaxed) {
            return Ok(());
        }
        self.watermark.store(w, Relaxed);
        if let Some((pipeline, subtasks)) = &self.pipeline_watermark {
            let passed = subtasks.iter().map(|c| c.load(Relaxed)).min();
            pipeline.fetch_max(passed.unwrap_or(w), Relaxed);
        }
        let out = self.operators.process_watermark(w)?;
        let held = self.operators.buffered_rows();
        self.shares[1].set(&self.metrics.buffered_rows, held);
        self.write(out).await?;
        if let Some(next) = &mut self.next_stage {
            next.watermark(w).await?;
        }
        Ok(())
    }

    /// Takes the checkpoint once every running input has delivered its barrier.
    async fn align(&mut self, inputs: &mut [Input]) -> Result<(), JobError> {
        let running = || inputs.iter().filter(|i| !i.ended);
        if running().any(|i| i.barrier.is_none()) {
            return Ok(());
        }
        let Some(epoch) = running().filter_map(|i| i.barrier).max() else {
            return Ok(());
        };
        for i in inputs.iter_mut() {
            i.barrier = None;
        }
        self.barrier(epoch).await
    }

    fn outputs(&mut self) -> impl Iterator<Item = &mut SinkOutput> {
        self.sinks.iter_mut().chain(self.side_output.as_mut())
    }

    /// Snapshots at the barrier of `epoch`, then passes it on to a second stage: everything
    /// sent before it belongs to the checkpoint.
    async fn barrier(&mut self, epoch: u64) -> Result<(), JobError> {
        if let Some(next) = &mut self.next_stage {
            next.before_snapshot(epoch).await?;
        }
        self.snapshot(epoch).await?;
        if let Some(next) = &mut self.next_stage {
            next.barrier(epoch).await?;
        }
        Ok(())
    }

    async fn snapshot(&mut self, epoch: u64) -> Result<(), JobError> {
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
        if let Some(NextStage::Topic {
            writer, state_id, ..
        }) = &self.next_stage
        {
            operators.push((state_id.clone(), writer.describe(), writer.snapshot()?));
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
        if let Some(next) = &mut self.next_stage {
            next.commit(completed).await?;
        }
        Ok(())
    }

    /// Every input ended (`stopped`: some because the job stops): once the final checkpoint
    /// (placed by the sources just before) is complete, its rows are written and the sinks
    /// closed.
    async fn finish(mut self, stopped: bool) -> Result<(), JobError> {
        let watermark = self.watermark.load(Relaxed);
        if let Some(next) = &mut self.next_stage {
            next.end(watermark, stopped).await?;
        }
        if let Some(c) = &mut self.checkpoints {
            // Nothing reaches it any more: its last report stands for every later epoch. Said
            // before waiting, since the checkpoint that completes may be a later one than its
            // last (placed by a source feeding other pipelines, which ended after).
            let _ = c.link.reports.send(Report::PipelineFinished(c.index));
            let last = c.last_barrier;
            let completed = c.link.completion_of(last).await?;
            self.commit(completed).await?;
        }
        if let Some(next) = &mut self.next_stage {
            next.finish().await?;
        }
        for s in self.outputs() {
            s.sink.finish().await?;
        }
        Ok(())
    }

    async fn flush_all(&mut self) -> Result<(), JobError> {
        if let Some(next) = &mut self.next_stage {
            next.flush().await?;
        }
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
            if let Some(next) = &mut self.next_stage {
                next.send_rows(b).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::Operators;
    use crate::stream::{CheckpointBarrier, new_watermark_cell};

    /// Sends `m` and waits until the task has taken it.
    async fn deliver(tx: &mpsc::Sender<Message>, m: Message) {
        tx.send(m).await.unwrap();
        while tx.capacity() < tx.max_capacity() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The watermark a task of two inputs ends at when input 1 (at 10) ends while input 0 (at
    /// 100) waits at a barrier — where input 1 might have delivered the same barrier had it
    /// run on, as happens when the sources of a job stop one after the other.
    async fn watermark_when_the_slower_input_ends(stopped: bool) -> i64 {
        let watermark = new_watermark_cell();
        let task = PipelineTask {
            operators: FusedOperators::new(Operators::reading(0)),
            sinks: Vec::new(),
            metrics: Arc::default(),
            flush_interval: Duration::from_secs(60),
            watermark: watermark.clone(),
            pipeline_watermark: None,
            shares: Default::default(),
            side_output: None,
            mini_batch: None,
            next_stage: None,
            checkpoints: None,
        };
        let ((tx0, rx0), (tx1, rx1)) = (mpsc::channel(8), mpsc::channel(8));
        let run = tokio::spawn(task.run(vec![(0, rx0), (1, rx1)]));
        deliver(&tx0, Message::Watermark(100)).await;
        deliver(&tx1, Message::Watermark(10)).await;
        assert_eq!(watermark.load(Relaxed), 10);
        deliver(&tx0, Message::Barrier(CheckpointBarrier { epoch: 1 })).await;
        deliver(&tx1, Message::EndOfInput { stopped }).await;
        tx0.send(Message::EndOfInput { stopped }).await.unwrap();
        run.await.unwrap().unwrap();
        watermark.load(Relaxed)
    }

    #[tokio::test]
    async fn an_input_stopped_behind_the_others_holds_event_time_where_it_was() {
        assert_eq!(
            watermark_when_the_slower_input_ends(true).await,
            10,
            "a stopped input's rows after its checkpoint are still to come: they must not be late"
        );
        assert_eq!(
            watermark_when_the_slower_input_ends(false).await,
            100,
            "an input read to its end holds nothing back"
        );
    }
}
