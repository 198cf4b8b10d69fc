//! Wiring and running a job graph: one task per source, one per pipeline, bounded channels
//! between them, a stop signal shared by all, and, when checkpoints are on, the coordinator.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::TableOutput;
use super::coordinator::{Coordinator, CoordinatorConfig};
use super::metrics::{JobMetrics, LastCheckpoint};
use super::mini_batch::HeldBatches;
use super::pipeline::{PipelineCheckpoints, PipelineTask, SinkOutput};
use super::restore::{RestorePlan, sink_id};
use crate::checkpoint::{CheckpointMode, CheckpointStore};
use crate::operators::FusedOperators;
use crate::plan::JobGraph;
use crate::stream::{JobError, Message};

/// Knobs of the runtime (from `sluice.yaml`).
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Rows per batch a source aims for.
    pub batch_size: usize,
    /// Longest a source holds rows back to fill a batch.
    pub linger: Duration,
    /// Messages buffered per channel before the sender waits.
    pub channel_capacity: usize,
    /// How often sinks flush buffered rows even if their buffer is not full.
    pub flush_interval: Duration,
    /// Idle timeout for every source without its own `scan.watermark.idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// On a stop request, end event time first so every window is emitted (`--drain`),
    /// instead of keeping open windows in the final checkpoint. Read when the stop comes, so
    /// a job server can decide then.
    pub drain_on_stop: Arc<AtomicBool>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            batch_size: 8192,
            linger: Duration::from_millis(200),
            channel_capacity: 8,
            flush_interval: Duration::from_secs(1),
            idle_timeout: None,
            drain_on_stop: Arc::default(),
        }
    }
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub rows_in: u64,
    pub rows_out: u64,
    pub bad_records: u64,
    pub late_rows: u64,
    pub elapsed: Duration,
    pub stopped: bool,
    /// The newest checkpoint completed by this run.
    pub last_checkpoint: Option<LastCheckpoint>,
}

/// How a job takes checkpoints.
pub struct CheckpointSetup {
    pub store: CheckpointStore,
    pub interval: Duration,
    pub mode: CheckpointMode,
    pub timeout: Duration,
    pub num_retained: usize,
    pub max_parallelism: u32,
    /// Names this job's deduplication tokens and part files across restores: kept from the
    /// restored checkpoint, new on a fresh start.
    pub run_id: String,
    /// The state to start from, already matched to the job.
    pub restore: Option<RestorePlan>,
    /// The newest epoch in the checkpoint directory: new epochs count on from it.
    pub epoch_base: u64,
}

/// Runs a job until its bounded inputs end, `stop` turns true, or a task fails (then every other
/// task is stopped and the first real error is returned). With `checkpoints`, the job starts
/// from the restored state and takes checkpoints as it runs.
pub async fn run_job(
    job: JobGraph,
    opts: RuntimeOptions,
    metrics: JobMetrics,
    mut stop: watch::Receiver<bool>,
    checkpoints: Option<CheckpointSetup>,
) -> Result<JobReport, JobError> {
    let started = Instant::now();
    let (internal_stop_tx, internal_stop) = watch::channel(false);
    let mut tasks: JoinSet<Result<(), JobError>> = JoinSet::new();
    let pipeline_ids = job.pipeline_ids();
    let (mut restore, link) = match checkpoints {
        Some(c) => {
            let restored_epoch = c.restore.as_ref().map_or(0, |r| r.epoch).max(c.epoch_base);
            let config = CoordinatorConfig {
                store: c.store,
                job: job.name.clone(),
                run_id: c.run_id.clone(),
                interval: c.interval,
                timeout: c.timeout,
                num_retained: c.num_retained,
                max_parallelism: c.max_parallelism,
                sources: job.sources.iter().map(|s| s.table.clone()).collect(),
                pipelines: pipeline_ids.clone(),
            };
            let (coordinator, link) = Coordinator::new(
                config,
                c.mode,
                restored_epoch,
                stop.clone(),
                metrics.checkpoints.clone(),
            );
            tasks.spawn(coordinator.run());
            (c.restore, Some((link, c.run_id)))
        }
        None => (None, None),
    };
    // Without checkpoints, every run is new to the sinks' deduplication.
    let run_id = link
        .as_ref()
        .map_or_else(fresh_run_id, |(_, run)| run.clone());
    let mode = link.as_ref().map(|(l, _)| l.mode);

    let mut senders: Vec<Vec<mpsc::Sender<Message>>> =
        job.sources.iter().map(|_| Vec::new()).collect();
    for (i, (pipeline, id)) in job.pipelines.into_iter().zip(&pipeline_ids).enumerate() {
        let mut inputs = Vec::with_capacity(pipeline.inputs.len());
        for &source in &pipeline.inputs {
            let (tx, rx) = mpsc::channel(opts.channel_capacity);
            senders[source].push(tx);
            inputs.push((source, rx));
        }
        let mut restored = restore
            .as_mut()
            .map(|r| std::mem::take(&mut r.pipelines[i]))
            .unwrap_or_default();
        let open = async |node: &crate::plan::SinkNode, late: bool| {
            let sid = sink_id(id, &node.table, late);
            let writer = format!("{}/{run_id}/{sid}", job.name);
            SinkOutput::open(node, sid, &writer, mode).await
        };
        let mut sinks = Vec::with_capacity(pipeline.sinks.len());
        for node in &pipeline.sinks {
            sinks.push(open(node, false).await?);
        }
        let mut side_output = match &pipeline.side_output {
            Some(node) => Some(open(node, true).await?),
            None => None,
        };
        // Epochs that completed before the restore may not all have been written: again.
        for s in sinks.iter_mut().chain(side_output.as_mut()) {
            if let Some(epochs) = restored.sinks.remove(s.id()) {
                s.recommit(epochs).await?;
            }
        }
        if let Some(w) = restored.watermark {
            pipeline.watermark.store(w, Relaxed);
        }
        let operator_ids = pipeline.operator_ids(id);
        // Opening reads files (lookup tables): off the async workers.
        let mut chain = FusedOperators::new(pipeline.operators)
            .with_metrics(metrics.sinks[i].operators.clone());
        let states = restored.operators;
        let chain = tokio::task::spawn_blocking(move || {
            chain.open()?;
            if !states.is_empty() {
                chain.restore(&states)?;
            }
            Ok::<_, JobError>(chain)
        })
        .await
        .map_err(|e| JobError::internal(format!("opening operators: {e}")))??;
        let task = PipelineTask {
            operators: chain,
            sinks,
            metrics: metrics.sinks[i].clone(),
            flush_interval: opts.flush_interval,
            watermark: pipeline.watermark.clone(),
            side_output,
            mini_batch: pipeline.mini_batch.map(HeldBatches::new),
            checkpoints: link.as_ref().map(|(link, _)| PipelineCheckpoints {
                index: i,
                link: link.clone(),
                operator_ids,
                last_barrier: 0,
            }),
        };
        tasks.spawn(task.run(inputs));
    }
    for (index, ((node, outputs), m)) in job
        .sources
        .into_iter()
        .zip(senders)
        .zip(&metrics.sources)
        .enumerate()
    {
        let source =
            node.connector
                .create_source(&node.table, &node.scan_schema, node.columns.clone())?;
        let mut out = TableOutput::new(
            &node,
            node.idle_timeout.or(opts.idle_timeout),
            outputs,
            m.clone(),
            internal_stop.clone(),
            opts.batch_size,
            opts.linger,
        )
        .with_drain(opts.drain_on_stop.clone());
        if let Some((link, _)) = &link {
            let positions = restore
                .as_mut()
                .map(|r| std::mem::take(&mut r.sources[index]))
                .unwrap_or_default();
            out = out.with_checkpoints(index, link.clone(), positions);
        }
        tasks.spawn(async move {
            let mut out = out;
            let end = source.run(&mut out).await?;
            out.finish(end).await
        });
    }
    // The tasks hold the links now: the coordinator ends when the last of them does.
    let checkpointing = link.is_some();
    drop(link);

    let mut first_error: Option<JobError> = None;
    let mut stop_requested = false;
    loop {
        tokio::select! {
            joined = tasks.join_next() => {
                let Some(joined) = joined else { break };
                let result = joined.unwrap_or_else(|e| Err(JobError::internal(format!("task panicked: {e}"))));
                if let Err(e) = result {
                    let _ = internal_stop_tx.send(true);
                    // With checkpoints a failed job is abandoned where it stands, as a crash
                    // would leave it: the restart restores the last checkpoint.
                    if checkpointing {
                        tasks.abort_all();
                    }
                    // A closed channel is a symptom; keep the task error that caused it.
                    if first_error.is_none() || matches!(first_error, Some(JobError::ChannelClosed)) {
                        first_error = Some(e);
                    }
                }
            }
            changed = stop.changed(), if !stop_requested => {
                if changed.is_err() || *stop.borrow() {
                    stop_requested = true;
                    let _ = internal_stop_tx.send(true);
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(JobReport {
        rows_in: metrics.rows_in(),
        rows_out: metrics.rows_out(),
        bad_records: metrics.bad_records(),
        late_rows: metrics.late_rows(),
        elapsed: started.elapsed(),
        stopped: stop_requested,
        last_checkpoint: metrics.checkpoints.last(),
    })
}

/// A run id for a job without checkpoints (or its first start): unique per start.
pub fn fresh_run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{millis:x}")
}
