//! Wiring and running a job graph: one task per source, one per pipeline, bounded channels
//! between them, a stop signal shared by all, and, when checkpoints are on, the coordinator.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::TableOutput;
use super::coordinator::{CheckpointLink, Coordinator, CoordinatorConfig};
use super::exchange::{KeyRouter, NextStage, PipelineInput};
use super::metrics::{JobMetrics, LastCheckpoint};
use super::mini_batch::HeldBatches;
use super::pipeline::{PipelineCheckpoints, PipelineTask, SinkOutput};
use super::restore::{PipelineRestore, RestorePlan, sink_id};
use crate::checkpoint::{CheckpointConfig, CheckpointMode, CheckpointTarget};
use crate::connectors::ConnectorConfig;
use crate::connectors::kafka::{RepartitionProducer, RepartitionWriter};
use crate::operators::FusedOperators;
use crate::operators::Operators;
use crate::plan::{JobGraph, MiniBatch, Parallelism, STAGE_INPUT, SinkNode};
use crate::stream::metrics::SinkMetrics;
use crate::stream::{JobError, Message, WatermarkCell, new_watermark_cell};

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
    pub store: CheckpointTarget,
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

impl CheckpointSetup {
    /// Checkpoints as `ck` says, every `interval`, into `store`; starting from `restore` (and
    /// after epoch `epoch_base`), with the sinks' run id `run_id`.
    pub fn new(
        ck: &CheckpointConfig,
        interval: Duration,
        store: CheckpointTarget,
        run_id: String,
        epoch_base: u64,
        restore: Option<RestorePlan>,
    ) -> Self {
        CheckpointSetup {
            store,
            interval,
            mode: ck.mode(),
            timeout: ck.timeout(),
            num_retained: ck.num_retained(),
            max_parallelism: ck.max_parallelism(),
            run_id,
            restore,
            epoch_base,
        }
    }
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
    let max_parallelism = checkpoints.as_ref().map_or(128, |c| c.max_parallelism);
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
                pipelines: job.task_ids().into_iter().map(|t| t.id).collect(),
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

    // A worker's repartition topics exist before anything writes or reads them; its first
    // stages share one producer.
    let mut repartition_producer = None;
    for s in &job.sources {
        if let ConnectorConfig::Repartition(topic) = &s.connector {
            topic.ensure().await?;
            if repartition_producer.is_none() {
                repartition_producer = Some(RepartitionProducer::new(topic)?);
            }
        }
    }

    // Every subtask of every pipeline is one task, with its own channels, operators and sinks.
    let task_ids = job.task_ids();
    let context = TaskContext {
        job: &job.name,
        run_id: &run_id,
        mode,
        link: link.as_ref().map(|(l, _)| l),
        flush_interval: opts.flush_interval,
    };
    let mut senders: Vec<Vec<PipelineInput>> = job.sources.iter().map(|_| Vec::new()).collect();
    let mut next_task = 0;
    let planned: Vec<Parallelism> = job
        .pipelines
        .iter()
        .map(|p| p.parallelism.clone())
        .collect();
    // The channels from a first stage's subtasks into each of the second stage's, by the
    // second stage's index.
    let mut stage_inputs: HashMap<usize, Vec<SubtaskInputs>> = HashMap::new();
    for (i, pipeline) in job.pipelines.into_iter().enumerate() {
        let n = pipeline.parallelism.subtasks();
        let mut receivers: Vec<Vec<(usize, mpsc::Receiver<Message>)>> =
            match stage_inputs.remove(&i) {
                Some(from_first_stage) => from_first_stage,
                None => (0..n).map(|_| Vec::new()).collect(),
            };
        // A first stage: each subtask sends to every subtask of the second, by its key; or,
        // on a worker, to the repartition topic the second stage reads.
        let mut next_stages: Vec<Option<NextStage>> = (0..n).map(|_| None).collect();
        if let Some(out) = &pipeline.repartition {
            let producer = repartition_producer
                .clone()
                .ok_or_else(|| JobError::internal("a repartition topic without its source"))?;
            let origins = pipeline.parallelism.running();
            // What a first stage sends after a restore must be what it sent before: when it may
            // emit other rows, it sends only what a completed checkpoint holds.
            let holds = mode.is_some() && out.held;
            for (k, (stage, origin)) in next_stages.iter_mut().zip(origins).enumerate() {
                let task = &task_ids[next_task + k].id;
                let writer = RepartitionWriter::new(&out.topic, origin, producer.clone());
                *stage = Some(NextStage::Topic {
                    router: KeyRouter::new(out.key.clone(), out.topic.partitions, max_parallelism),
                    writer: Box::new(if holds {
                        writer.holding_epochs()
                    } else {
                        writer
                    }),
                    state_id: pipeline
                        .repartition_state_id(task)
                        .expect("a repartitioning stage"),
                });
            }
        } else if let Some(next) = pipeline.downstream {
            let m = planned[next].subtasks();
            let mut into_next: Vec<SubtaskInputs> = (0..m).map(|_| Vec::new()).collect();
            for out in next_stages.iter_mut() {
                let (txs, rxs): (Vec<_>, Vec<_>) =
                    (0..m).map(|_| mpsc::channel(opts.channel_capacity)).unzip();
                for (sub, rx) in rxs.into_iter().enumerate() {
                    into_next[sub].push((STAGE_INPUT, rx));
                }
                let router = match &planned[next] {
                    Parallelism::Keyed { keys, .. } if m > 1 => {
                        Some(KeyRouter::new(keys[0].clone(), m, max_parallelism))
                    }
                    _ => None,
                };
                *out = Some(NextStage::Local(PipelineInput {
                    subtasks: txs,
                    router,
                    in_turn: None,
                    by_split: false,
                }));
            }
            stage_inputs.insert(next, into_next);
        }
        for (k, &source) in pipeline.inputs.iter().enumerate() {
            let (txs, rxs): (Vec<_>, Vec<_>) =
                (0..n).map(|_| mpsc::channel(opts.channel_capacity)).unzip();
            for (sub, rx) in rxs.into_iter().enumerate() {
                receivers[sub].push((source, rx));
            }
            let router = match &pipeline.parallelism {
                Parallelism::Keyed { keys, .. } if n > 1 => {
                    Some(KeyRouter::new(keys[k].clone(), n, max_parallelism))
                }
                _ => None,
            };
            let in_turn = matches!(pipeline.parallelism, Parallelism::Spread { .. })
                .then(|| std::sync::atomic::AtomicUsize::new(0));
            senders[source].push(PipelineInput {
                subtasks: txs,
                router,
                in_turn,
                by_split: matches!(pipeline.parallelism, Parallelism::Partitions { .. }),
            });
        }
        let operator_ids: Vec<_> = task_ids[next_task..next_task + n]
            .iter()
            .map(|t| pipeline.operator_ids(&t.id))
            .collect();
        // One subtask runs the planned operators; several run instances of them, each with
        // its own watermark. So do the stages of a pipeline cut in two: they share its cell,
        // and each must keep its own watermark.
        let staged = pipeline.upstream.is_some() || pipeline.downstream.is_some();
        let (cells, operator_sets) = if n == 1 && !staged {
            (vec![pipeline.watermark.clone()], vec![pipeline.operators])
        } else {
            let cells: Vec<WatermarkCell> = (0..n).map(|_| new_watermark_cell()).collect();
            let sets = cells
                .iter()
                .map(|c| pipeline.operators.instance(c))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| JobError::internal("an operator cannot run as subtasks"))?;
            (cells, sets)
        };
        let subtasks = operator_sets.into_iter().zip(receivers).zip(&cells);
        let subtasks = subtasks.zip(operator_ids).zip(next_stages);
        for ((((operators, inputs), cell), operator_ids), next_stage) in subtasks {
            let task = &task_ids[next_task];
            let index = next_task;
            next_task += 1;
            let restored = restore
                .as_mut()
                .map(|r| std::mem::take(&mut r.pipelines[index]))
                .unwrap_or_default();
            let node = SubtaskNode {
                id: &task.id,
                sinks: &pipeline.sinks,
                side_output: pipeline.side_output.as_ref(),
                operator_ids,
                watermark: cell.clone(),
                pipeline_watermark: (n > 1 || staged)
                    .then(|| (pipeline.watermark.clone(), cells.clone())),
                mini_batch: pipeline.mini_batch,
                metrics: metrics.sinks[i].clone(),
                checkpoint_index: index,
                next_stage,
            };
            let task = open_subtask(node, operators, restored, &context).await?;
            tasks.spawn(task.run(inputs));
        }
    }
    for (index, ((node, outputs), m)) in job
        .sources
        .into_iter()
        .zip(senders)
        .zip(&metrics.sources)
        .enumerate()
    {
        let source = node.connector.create_source(
            &node.table,
            &node.scan_schema,
            node.columns.clone(),
            node.parallelism,
        )?;
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
            let restored = restore
                .as_mut()
                .map(|r| std::mem::take(&mut r.sources[index]))
                .unwrap_or_default();
            out = out.with_checkpoints(index, link.clone(), restored);
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

/// A subtask's input channels, each with the source it carries ([`STAGE_INPUT`] for a first
/// stage's rows).
type SubtaskInputs = Vec<(usize, mpsc::Receiver<Message>)>;

/// One subtask of a pipeline, as it is opened.
struct SubtaskNode<'a> {
    /// Its id in checkpoints (see [`JobGraph::task_ids`](crate::plan::JobGraph::task_ids)).
    id: &'a str,
    sinks: &'a [SinkNode],
    side_output: Option<&'a SinkNode>,
    operator_ids: Vec<Option<String>>,
    watermark: WatermarkCell,
    pipeline_watermark: Option<(WatermarkCell, Vec<WatermarkCell>)>,
    mini_batch: Option<MiniBatch>,
    metrics: Arc<SinkMetrics>,
    /// Its index among the job's tasks in checkpoints.
    checkpoint_index: usize,
    /// A first stage's subtask: where its rows go.
    next_stage: Option<NextStage>,
}

/// What every subtask of a job shares.
struct TaskContext<'a> {
    job: &'a str,
    run_id: &'a str,
    mode: Option<CheckpointMode>,
    link: Option<&'a CheckpointLink>,
    flush_interval: Duration,
}

/// Opens a subtask's sinks (writing again what a restored checkpoint staged) and operators
/// (restored), ready to run.
async fn open_subtask(
    node: SubtaskNode<'_>,
    operators: Operators,
    mut restored: PipelineRestore,
    context: &TaskContext<'_>,
) -> Result<PipelineTask, JobError> {
    let open_as = async |sink: &SinkNode, sid: String| {
        let writer = format!("{}/{}/{sid}", context.job, context.run_id);
        SinkOutput::open(sink, sid, &writer, context.mode).await
    };
    let open = async |sink: &SinkNode, late: bool| {
        open_as(sink, sink_id(node.id, &sink.table, late)).await
    };
    let mut sinks = Vec::with_capacity(node.sinks.len());
    for sink in node.sinks {
        sinks.push(open(sink, false).await?);
    }
    let mut side_output = match node.side_output {
        Some(sink) => Some(open(sink, true).await?),
        None => None,
    };
    // Epochs that completed before the restore may not all have been written: again.
    for s in sinks.iter_mut().chain(side_output.as_mut()) {
        if let Some(epochs) = restored.sinks.remove(s.id()) {
            s.recommit(epochs).await?;
        }
    }
    // Rows staged by a subtask of another parallelism: again, under that subtask's name.
    for moved in restored.moved_sinks {
        let sink = if moved.late {
            node.side_output.filter(|s| s.table == moved.table)
        } else {
            node.sinks.iter().find(|s| s.table == moved.table)
        };
        let Some(sink) = sink else { continue };
        let mut output = open_as(sink, moved.id).await?;
        output.recommit(moved.epochs).await?;
        output.close().await?;
    }
    let mut next_stage = node.next_stage;
    if let (Some(NextStage::Topic { writer, .. }), Some(state)) =
        (&mut next_stage, &restored.repartition)
    {
        writer.restore(state)?;
        writer.send_restored().await?;
    }
    if let Some(w) = restored.watermark {
        node.watermark.store(w, Relaxed);
        if let Some((pipeline, _)) = &node.pipeline_watermark {
            pipeline.fetch_max(w, Relaxed);
        }
    }
    // Opening reads files (lookup tables): off the async workers.
    let mut chain = FusedOperators::new(operators).with_metrics(node.metrics.operators.clone());
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
    Ok(PipelineTask {
        operators: chain,
        sinks,
        metrics: node.metrics,
        flush_interval: context.flush_interval,
        watermark: node.watermark,
        pipeline_watermark: node.pipeline_watermark,
        shares: Default::default(),
        side_output,
        mini_batch: node.mini_batch.map(HeldBatches::new),
        next_stage,
        checkpoints: context.link.map(|link| PipelineCheckpoints {
            index: node.checkpoint_index,
            link: link.clone(),
            operator_ids: node.operator_ids,
            last_barrier: 0,
        }),
    })
}

/// A run id for a job without checkpoints (or its first start): unique per start.
pub fn fresh_run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{millis:x}")
}
