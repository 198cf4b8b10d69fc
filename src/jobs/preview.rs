//! A query run for its rows alone — the shell's `SELECT`, the server's `/v1/preview`: its sinks
//! replaced by a channel to the caller, no checkpoints, nothing written anywhere.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::connectors::ConnectorConfig;
use crate::connectors::collect::CollectConfig;
use crate::plan::JobGraph;
use crate::runtime::metrics::JobMetrics;
use crate::runtime::{JobReport, RuntimeOptions, run_job};
use crate::stream::JobError;

/// A running query: its rows as they come (the channel closes when it ends), how to stop it,
/// and how it ended.
pub struct Preview {
    pub schema: SchemaRef,
    pub rows: mpsc::Receiver<RecordBatch>,
    pub stop: watch::Sender<bool>,
    pub ended: JoinHandle<Result<JobReport, JobError>>,
}

/// Starts the query `job` (a planned `SELECT`); `None` when it has no result to show.
pub fn start_preview(mut job: JobGraph, options: RuntimeOptions) -> Option<Preview> {
    let schema = job.pipelines.first()?.sinks.first()?.schema.clone();
    // A small buffer: a slow reader slows the query rather than piling rows up.
    let (tx, rows) = mpsc::channel(16);
    for p in &mut job.pipelines {
        for s in &mut p.sinks {
            s.connector = ConnectorConfig::Collect(CollectConfig { rows: tx.clone() });
        }
    }
    drop(tx);
    let (stop, stop_rx) = watch::channel(false);
    let metrics = JobMetrics::of(&job);
    let ended = tokio::spawn(run_job(job, options, metrics, stop_rx, None));
    Some(Preview {
        schema,
        rows,
        stop,
        ended,
    })
}
