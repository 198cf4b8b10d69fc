//! Wiring and running a job graph: one task per source, one per pipeline, bounded channels
//! between them, and a stop signal shared by all.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::TableOutput;
use super::metrics::{JobMetrics, SinkMetrics};
use crate::operators::OperatorChain;
use crate::plan::{JobGraph, SinkNode};
use crate::stream::{JobError, Message, Sink, WatermarkCell};

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
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            batch_size: 8192,
            linger: Duration::from_millis(200),
            channel_capacity: 8,
            flush_interval: Duration::from_secs(1),
            idle_timeout: None,
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
}

/// Runs a job until its bounded inputs end, `stop` turns true, or a task fails (then every other
/// task is stopped and the first real error is returned).
pub async fn run_job(
    job: JobGraph,
    opts: RuntimeOptions,
    metrics: JobMetrics,
    mut stop: watch::Receiver<bool>,
) -> Result<JobReport, JobError> {
    let started = Instant::now();
    let (internal_stop_tx, internal_stop) = watch::channel(false);
    let mut tasks: JoinSet<Result<(), JobError>> = JoinSet::new();

    let mut senders: Vec<Vec<mpsc::Sender<Message>>> =
        job.sources.iter().map(|_| Vec::new()).collect();
    for (i, pipeline) in job.pipelines.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(opts.channel_capacity);
        senders[pipeline.source].push(tx);
        // Each sink of each pipeline is its own writer, even when several write one table.
        let writer = format!("{}/{i}", job.name);
        let mut sinks = Vec::with_capacity(pipeline.sinks.len());
        for (j, node) in pipeline.sinks.iter().enumerate() {
            let id = if j == 0 {
                writer.clone()
            } else {
                format!("{writer}-{j}")
            };
            sinks.push(SinkOutput::open(node, &id).await?);
        }
        let side_output = match &pipeline.side_output {
            Some(node) => Some(SinkOutput::open(node, &format!("{writer}-late")).await?),
            None => None,
        };
        // Opening reads files (lookup tables): off the async workers.
        let mut chain = OperatorChain::new(pipeline.operators);
        let chain = tokio::task::spawn_blocking(move || chain.open().map(|()| chain))
            .await
            .map_err(|e| JobError::internal(format!("opening operators: {e}")))??;
        let task = PipelineTask {
            chain,
            sinks,
            metrics: metrics.sinks[i].clone(),
            flush_interval: opts.flush_interval,
            watermark: pipeline.watermark.clone(),
            side_output,
        };
        tasks.spawn(task.run(rx));
    }
    for ((node, outputs), m) in job.sources.into_iter().zip(senders).zip(&metrics.sources) {
        let source =
            node.connector
                .create_source(&node.table, &node.scan_schema, node.columns.clone())?;
        let out = TableOutput::new(
            &node,
            node.idle_timeout.or(opts.idle_timeout),
            outputs,
            m.clone(),
            internal_stop.clone(),
            opts.batch_size,
            opts.linger,
        );
        tasks.spawn(async move {
            let mut out = out;
            let end = source.run(&mut out).await?;
            out.finish(end).await
        });
    }

    let mut first_error: Option<JobError> = None;
    let mut stop_requested = false;
    loop {
        tokio::select! {
            joined = tasks.join_next() => {
                let Some(joined) = joined else { break };
                let result = joined.unwrap_or_else(|e| Err(JobError::internal(format!("task panicked: {e}"))));
                if let Err(e) = result {
                    let _ = internal_stop_tx.send(true);
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
    })
}

/// The operators of one INSERT (or of several INSERTs of one query) and its sinks, in one task.
struct PipelineTask {
    chain: OperatorChain,
    sinks: Vec<SinkOutput>,
    metrics: Arc<SinkMetrics>,
    flush_interval: Duration,
    watermark: WatermarkCell,
    /// Where late rows go.
    side_output: Option<SinkOutput>,
}

/// A sink with its declared schema and name.
struct SinkOutput {
    sink: Box<dyn Sink>,
    schema: arrow::datatypes::SchemaRef,
    name: String,
}

impl SinkOutput {
    async fn open(node: &SinkNode, writer: &str) -> Result<Self, JobError> {
        let mut sink = node.connector.create_sink(&node.table, &node.schema)?;
        sink.open(writer).await?;
        Ok(SinkOutput {
            sink,
            schema: node.schema.clone(),
            name: node.table.clone(),
        })
    }

    /// Writes `batch` under the sink's declared names and nullability; a NULL in a NOT NULL
    /// column fails here with the column named.
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), JobError> {
        let b = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| JobError::sink(&self.name, e.to_string()))?;
        self.sink.write(b).await
    }
}

impl PipelineTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) -> Result<(), JobError> {
        let mut flush = tokio::time::interval(self.flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = flush.tick() => {
                    self.flush_all().await?;
                    continue;
                }
            };
            match msg {
                Some(Message::Batch(batch)) => {
                    let out = self.chain.process_batch(batch)?;
                    self.metrics
                        .late_rows
                        .store(self.chain.late_rows(), Relaxed);
                    self.write(out).await?;
                    self.write_side_output().await?;
                }
                Some(Message::Watermark(w)) => {
                    self.watermark.store(w, Relaxed);
                    let out = self.chain.process_watermark(w)?;
                    self.metrics
                        .buffered_rows
                        .store(self.chain.buffered_rows(), Relaxed);
                    self.write(out).await?;
                }
                Some(Message::Barrier(_)) => self.flush_all().await?,
                Some(Message::EndOfInput) => {
                    for s in self.sinks.iter_mut().chain(self.side_output.as_mut()) {
                        s.sink.finish().await?;
                    }
                    return Ok(());
                }
                // The source failed or was torn down; its task reports why.
                None => return Err(JobError::ChannelClosed),
            }
        }
    }

    async fn flush_all(&mut self) -> Result<(), JobError> {
        for s in self.sinks.iter_mut().chain(self.side_output.as_mut()) {
            s.sink.flush().await?;
        }
        Ok(())
    }

    async fn write_side_output(&mut self) -> Result<(), JobError> {
        let Some(side) = &mut self.side_output else {
            return Ok(());
        };
        for b in self.chain.take_side_output() {
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
