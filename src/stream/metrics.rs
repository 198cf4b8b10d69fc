//! Counters a running job updates: rows in per source, rows out per pipeline, bad records,
//! watermark and Kafka lag. Plain atomics: cheap to bump once per batch, read by the status line
//! and the job report.

use std::sync::atomic::{AtomicI64, AtomicU64};

/// One task's part of a gauge that the subtasks of a pipeline add up to (rows held, late rows,
/// queued batches): each subtask moves the gauge by its own change.
#[derive(Debug, Default, Clone, Copy)]
pub struct GaugeShare(u64);

impl GaugeShare {
    /// This task's part is now `now`.
    pub fn set(&mut self, gauge: &AtomicU64, now: u64) {
        // Wrapping: a part going down subtracts.
        gauge.fetch_add(
            now.wrapping_sub(self.0),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.0 = now;
    }
}

#[derive(Debug, Default)]
pub struct SourceMetrics {
    pub name: String,
    pub rows_in: AtomicU64,
    pub bad_records: AtomicU64,
    /// Latest emitted watermark in ms, `i64::MIN` before the first.
    pub watermark: AtomicI64,
    /// Records behind the end of the log (Kafka), -1 when unknown or not a log.
    pub lag: AtomicI64,
    /// Rows the job already counted once: a repartition topic's, read again by the worker
    /// that keeps their key.
    pub internal: bool,
}

impl SourceMetrics {
    pub fn new(name: String) -> Self {
        SourceMetrics {
            name,
            watermark: AtomicI64::new(i64::MIN),
            lag: AtomicI64::new(-1),
            ..Default::default()
        }
    }
}

/// One pipeline's counters (named after the tables it writes).
#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub name: String,
    /// Indices of the sources the pipeline reads (two for a join of two tables), for drawing
    /// the dataflow.
    pub sources: Vec<usize>,
    /// For a pipeline's second stage: the pipeline (its first stage) whose rows it reads.
    pub upstream: Option<usize>,
    /// For a first stage: the pipeline its rows go to (it has no sinks).
    pub downstream: Option<usize>,
    /// Batches waiting in the pipeline's input queue, and its capacity: a full queue means the
    /// pipeline holds its source back (backpressure).
    pub queued_batches: AtomicU64,
    pub queue_capacity: AtomicU64,
    /// Its operators in order; empty when the job was not built from a graph (benchmarks).
    pub operators: Vec<std::sync::Arc<OperatorMetrics>>,
    pub rows_out: AtomicU64,
    /// Rows the pipeline's window operators dropped as late.
    pub late_rows: AtomicU64,
    /// Rows the pipeline's operators hold (waiting for the watermark, or in pattern matches in
    /// progress): the state to watch for MATCH_RECOGNIZE without WITHIN.
    pub buffered_rows: AtomicU64,
}

/// One operator's counters: rows through it and what it holds, for the job page and `/metrics`.
#[derive(Debug, Default)]
pub struct OperatorMetrics {
    /// What the operator does, as EXPLAIN says it.
    pub name: String,
    /// Its id in checkpoints, for operators that keep state.
    pub state_id: Option<String>,
    /// What it reads (a source, earlier operators), for drawing the dataflow.
    pub reads: Vec<super::Feed>,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub late_rows: AtomicU64,
    pub buffered_rows: AtomicU64,
}

impl SinkMetrics {
    /// How full the pipeline's input queue is, 0 to 1: near 1, the pipeline is the bottleneck
    /// and its source waits (Flink's "backpressured").
    pub fn backpressure(&self) -> f64 {
        use std::sync::atomic::Ordering::Relaxed;
        let capacity = self.queue_capacity.load(Relaxed);
        if capacity == 0 {
            return 0.0;
        }
        self.queued_batches.load(Relaxed) as f64 / capacity as f64
    }
}
