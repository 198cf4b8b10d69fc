//! The checkpoint coordinator: triggers checkpoints at the interval, collects what every task
//! reports at the barrier, writes the checkpoint, and announces it complete.
//!
//! Aligned barriers (Chandy–Lamport, as Flink and Arroyo): the coordinator only raises the
//! requested epoch; each source places a barrier for it between two batches and reports its
//! positions there; each pipeline, when the barrier reaches it, snapshots its operators,
//! stages its sinks' rows of the epoch and reports. Every pipeline reads one source, so its one
//! input channel is already aligned. Once every task has reported an epoch (a finished task
//! counts with its last report) the state file and then the manifest are written, the
//! epoch is announced on `completed`, and sinks write the staged rows.
//!
//! A source that misses an epoch (two were requested while it was busy) places the newer one;
//! the older never completes and is dropped when a newer one does. A checkpoint that cannot be
//! written, or does not complete within the timeout, fails the job (Flink's default of no
//! tolerated checkpoint failures): the restart strategy then restores the last one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::metrics::CheckpointStatus;
use crate::checkpoint::manifest::{
    OperatorState, PipelineState, SinkState, SourceState, SplitWatermarks, StagedEpoch,
};
use crate::checkpoint::{
    CheckpointKind, CheckpointMode, CheckpointTarget, Manifest, StateFile, StoreError,
};
use crate::stream::{JobError, Positions};

/// What a task hands the coordinator.
pub(crate) enum Report {
    Source {
        index: usize,
        epoch: u64,
        positions: Positions,
        watermarks: SplitWatermarks,
        /// The source's final barrier: it sends nothing after it.
        last: bool,
    },
    Pipeline {
        index: usize,
        epoch: u64,
        state: PipelineSnapshot,
    },
    /// The pipeline ended: its last report stands for every later epoch. (A source says so
    /// with the `last` flag of its final report.)
    PipelineFinished(usize),
}

/// A pipeline's state at a barrier.
pub(crate) struct PipelineSnapshot {
    pub watermark: i64,
    /// (operator id, description, state bytes) of each stateful operator.
    pub operators: Vec<(String, String, Vec<u8>)>,
    pub sinks: Vec<StagedSink>,
}

/// Rows a sink holds for epochs not yet committed.
pub(crate) struct StagedSink {
    pub id: String,
    pub table: String,
    /// (epoch, rows, the batches as Arrow IPC).
    pub epochs: Vec<(u64, u64, Vec<u8>)>,
}

/// What every task of a checkpointed job shares.
#[derive(Clone)]
pub(crate) struct CheckpointLink {
    /// The epoch sources should place a barrier for next (raised by the coordinator, and by a
    /// source that ends, for its final checkpoint).
    pub requested: Arc<watch::Sender<u64>>,
    /// The newest completed epoch.
    pub completed: watch::Receiver<u64>,
    pub reports: mpsc::UnboundedSender<Report>,
    pub mode: CheckpointMode,
}

impl CheckpointLink {
    /// Requests a checkpoint beyond `placed`, the newest a source that ends has placed; returns
    /// its epoch. One already requested and not placed yet by it is that checkpoint: sources
    /// ending together (a worker's topic and its repartition topic, which feed different
    /// pipelines) must end with the same one, or each would wait for the other's.
    pub fn request_after(&self, placed: u64) -> u64 {
        let mut epoch = 0;
        self.requested.send_modify(|e| {
            *e = (*e).max(placed + 1);
            epoch = *e;
        });
        epoch
    }

    /// Waits until epoch `epoch` (or a later one) is complete.
    pub async fn completion_of(&mut self, epoch: u64) -> Result<u64, JobError> {
        let done = self
            .completed
            .wait_for(|&c| c >= epoch)
            .await
            // The coordinator failed (a checkpoint could not be written, its partition was
            // taken) and reports why: waiting for it is a symptom, like a closed channel.
            .map_err(|_| JobError::ChannelClosed)?;
        Ok(*done)
    }
}

/// Settings of the coordinator.
pub(crate) struct CoordinatorConfig {
    pub store: CheckpointTarget,
    pub job: String,
    pub run_id: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub num_retained: usize,
    pub max_parallelism: u32,
    /// Table of each source, id of each pipeline (in job order).
    pub sources: Vec<String>,
    pub pipelines: Vec<String>,
}

pub(crate) struct Coordinator {
    config: CoordinatorConfig,
    requested: Arc<watch::Sender<u64>>,
    completed: watch::Sender<u64>,
    reports: mpsc::UnboundedReceiver<Report>,
    /// Set when the job was asked to stop: the checkpoints taken then are savepoints.
    stop: watch::Receiver<bool>,
    status: Arc<CheckpointStatus>,
    sources: Vec<TaskReports<(Positions, SplitWatermarks)>>,
    pipelines: Vec<TaskReports<PipelineSnapshot>>,
    /// When each pending epoch was requested.
    requested_at: BTreeMap<u64, Instant>,
}

/// The reports of one task not yet superseded by a completed checkpoint.
struct TaskReports<T> {
    by_epoch: BTreeMap<u64, T>,
    finished: bool,
}

impl<T> Default for TaskReports<T> {
    fn default() -> Self {
        TaskReports {
            by_epoch: BTreeMap::new(),
            finished: false,
        }
    }
}

impl<T> TaskReports<T> {
    /// The task's state at `epoch`: its report for it, or, once finished, its last report.
    fn at(&self, epoch: u64) -> Option<&T> {
        match self.by_epoch.get(&epoch) {
            Some(r) => Some(r),
            None if self.finished => self.by_epoch.range(..epoch).next_back().map(|(_, r)| r),
            None => None,
        }
    }

    /// Forgets reports older than `epoch` (keeping the last one of a finished task).
    fn drop_before(&mut self, epoch: u64) {
        let keep = self.by_epoch.split_off(&epoch);
        if keep.is_empty() && self.finished {
            if let Some((e, r)) = self.by_epoch.pop_last() {
                self.by_epoch.insert(e, r);
            }
        } else {
            self.by_epoch = keep;
        }
    }
}

impl Coordinator {
    /// The coordinator and the link its tasks use; `restored_epoch` is the epoch restored from
    /// (0 on a fresh start): new epochs count on from it.
    pub fn new(
        config: CoordinatorConfig,
        mode: CheckpointMode,
        restored_epoch: u64,
        stop: watch::Receiver<bool>,
        status: Arc<CheckpointStatus>,
    ) -> (Self, CheckpointLink) {
        let requested = Arc::new(watch::Sender::new(restored_epoch));
        let (completed_tx, completed_rx) = watch::channel(restored_epoch);
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let link = CheckpointLink {
            requested: requested.clone(),
            completed: completed_rx,
            reports: reports_tx,
            mode,
        };
        let coordinator = Coordinator {
            sources: config.sources.iter().map(|_| Default::default()).collect(),
            pipelines: config
                .pipelines
                .iter()
                .map(|_| Default::default())
                .collect(),
            config,
            requested,
            completed: completed_tx,
            reports: reports_rx,
            stop,
            status,
            requested_at: BTreeMap::new(),
        };
        (coordinator, link)
    }

    /// Runs until every task has dropped its link.
    pub async fn run(mut self) -> Result<(), JobError> {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                report = self.reports.recv() => {
                    let Some(report) = report else { return Ok(()) };
                    self.receive(report);
                    self.complete_ready().await?;
                }
                _ = tick.tick() => {
                    self.check_timeout()?;
                    self.trigger();
                }
            }
        }
    }

    /// Requests the next checkpoint unless one is still pending or nothing runs any more.
    fn trigger(&mut self) {
        let requested = *self.requested.borrow();
        if requested > *self.completed.borrow() || self.sources.iter().all(|s| s.finished) {
            return;
        }
        self.requested.send_replace(requested + 1);
        self.requested_at.insert(requested + 1, Instant::now());
    }

    fn check_timeout(&self) -> Result<(), JobError> {
        let completed = *self.completed.borrow();
        let Some((&epoch, at)) = self.requested_at.range(completed + 1..).next() else {
            return Ok(());
        };
        if at.elapsed() < self.config.timeout {
            return Ok(());
        }
        let missing: Vec<String> = self
            .config
            .sources
            .iter()
            .zip(&self.sources)
            .filter(|(_, r)| r.at(epoch).is_none())
            .map(|(t, _)| format!("source `{t}`"))
            .chain(
                self.config
                    .pipelines
                    .iter()
                    .zip(&self.pipelines)
                    .filter(|(_, r)| r.at(epoch).is_none())
                    .map(|(p, _)| format!("pipeline `{p}`")),
            )
            .collect();
        Err(JobError::internal(format!(
            "checkpoint {epoch} did not complete within {:?} (execution.checkpointing.timeout); waiting for {}",
            self.config.timeout,
            missing.join(", ")
        )))
    }

    fn receive(&mut self, report: Report) {
        let epoch = match report {
            Report::Source {
                index,
                epoch,
                positions,
                watermarks,
                last,
            } => {
                let source = &mut self.sources[index];
                source.by_epoch.insert(epoch, (positions, watermarks));
                // Its positions stand from here on: the checkpoint completing with this
                // report is already a final one when every source has ended.
                source.finished |= last;
                epoch
            }
            Report::Pipeline {
                index,
                epoch,
                state,
            } => {
                self.pipelines[index].by_epoch.insert(epoch, state);
                epoch
            }
            Report::PipelineFinished(i) => {
                self.pipelines[i].finished = true;
                return;
            }
        };
        self.requested_at.entry(epoch).or_insert_with(Instant::now);
    }

    /// Writes every epoch that all tasks have reported, newest wins.
    async fn complete_ready(&mut self) -> Result<(), JobError> {
        let completed = *self.completed.borrow();
        let candidates: Vec<u64> = self
            .requested_at
            .range(completed + 1..)
            .map(|(e, _)| *e)
            .collect();
        let Some(epoch) = candidates.into_iter().rev().find(|&e| self.is_complete(e)) else {
            return Ok(());
        };
        self.write(epoch).await?;
        for s in &mut self.sources {
            s.drop_before(epoch);
        }
        for p in &mut self.pipelines {
            p.drop_before(epoch);
        }
        self.requested_at = self.requested_at.split_off(&(epoch + 1));
        self.completed.send_replace(epoch);
        Ok(())
    }

    fn is_complete(&self, epoch: u64) -> bool {
        self.sources.iter().all(|s| s.at(epoch).is_some())
            && self.pipelines.iter().all(|p| p.at(epoch).is_some())
    }

    async fn write(&mut self, epoch: u64) -> Result<(), JobError> {
        let started = self
            .requested_at
            .get(&epoch)
            .copied()
            .unwrap_or_else(Instant::now);
        let kind = if *self.stop.borrow() {
            CheckpointKind::Savepoint
        } else if self.sources.iter().all(|s| s.finished) {
            CheckpointKind::Final
        } else {
            CheckpointKind::Checkpoint
        };
        let mut state = StateFile::default();
        let sources = self
            .config
            .sources
            .iter()
            .zip(&self.sources)
            .map(|(table, r)| {
                let (positions, watermarks) = r.at(epoch).cloned().unwrap_or_default();
                SourceState {
                    table: table.clone(),
                    positions,
                    watermarks,
                }
            })
            .collect();
        let mut pipelines = Vec::with_capacity(self.pipelines.len());
        for (id, r) in self.config.pipelines.iter().zip(&self.pipelines) {
            let snap = r.at(epoch).expect("complete");
            pipelines.push(PipelineState {
                id: id.clone(),
                watermark: snap.watermark,
                operators: snap
                    .operators
                    .iter()
                    .map(|(id, describe, bytes)| OperatorState {
                        id: id.clone(),
                        describe: describe.clone(),
                        blob: state.add(bytes),
                    })
                    .collect(),
                sinks: snap
                    .sinks
                    .iter()
                    .map(|s| SinkState {
                        id: s.id.clone(),
                        table: s.table.clone(),
                        epochs: s
                            .epochs
                            .iter()
                            .map(|(epoch, rows, bytes)| StagedEpoch {
                                epoch: *epoch,
                                rows: *rows,
                                blob: state.add(bytes),
                            })
                            .collect(),
                    })
                    .collect(),
            });
        }
        let size = state.len();
        let mut manifest = Manifest {
            format: 0,
            job: self.config.job.clone(),
            run_id: self.config.run_id.clone(),
            epoch,
            kind,
            created_ms: chrono::Utc::now().timestamp_millis(),
            duration_ms: 0,
            max_parallelism: self.config.max_parallelism,
            state_bytes: 0,
            state_crc32: 0,
            state_file: None,
            sources,
            pipelines,
        };
        manifest.duration_ms = started.elapsed().as_millis() as u64;
        self.config
            .store
            .write(&mut manifest, state)
            .await
            .map_err(|e| match e {
                StoreError::Fenced { .. } => JobError::PartitionTaken(e.to_string()),
                e => JobError::internal(format!("writing checkpoint {epoch}: {e}")),
            })?;
        let duration = started.elapsed();
        tracing::info!(epoch, kind = kind.as_str(), bytes = size, ?duration, location = %self.config.store.location(), "checkpoint complete");
        self.status.completed(epoch, duration, size, kind);
        if let Err(e) = self.config.store.retain(self.config.num_retained).await {
            tracing::warn!("removing old checkpoints: {e}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_task_counts_for_later_epochs_with_its_last_report() {
        let mut r: TaskReports<&str> = TaskReports::default();
        r.by_epoch.insert(3, "at 3");
        r.by_epoch.insert(4, "at 4");
        assert_eq!(r.at(4), Some(&"at 4"));
        assert_eq!(r.at(5), None, "still running: epoch 5 is not reported yet");
        r.finished = true;
        assert_eq!(r.at(5), Some(&"at 4"), "finished: its last report stands");
        assert_eq!(r.at(2), None);
        // Completing epoch 6 drops what it supersedes but keeps a finished task's last report.
        r.drop_before(6);
        assert_eq!(r.at(7), Some(&"at 4"));
        let mut running: TaskReports<&str> = TaskReports::default();
        running.by_epoch.insert(3, "at 3");
        running.by_epoch.insert(6, "at 6");
        running.drop_before(6);
        assert_eq!(running.by_epoch.keys().copied().collect::<Vec<_>>(), [6]);
    }
}
