//! Streaming operators. Each implements one small trait, [`Operator`]: take a batch, react to a
//! watermark, say what it is. Stateless operators here evaluate DataFusion physical expressions
//! built once at plan time; stateful ones (windows, patterns) hold state between calls and emit
//! when watermarks advance. The runtime never special-cases an operator.

pub mod aggregate;
pub mod changelog_normalize;
pub mod deduplicate;
pub mod evaluate;
pub mod event_time;
mod filter;
mod graph;
pub mod group_aggregate;
pub mod join;
pub mod match_recognize;
pub mod over;
mod projection;
pub mod retracting_extreme;
pub mod snapshot;
#[cfg(test)]
pub(crate) mod testing;
pub mod top_n;
mod union;
pub mod window;

pub use filter::Filter;
pub use graph::{Feed, Operators};
pub use projection::Projection;
pub use union::UnionAll;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use arrow::array::RecordBatch;

use crate::stream::metrics::{GaugeShare, OperatorMetrics};
use crate::stream::{JobError, Operator};

/// A pipeline's operators run in its task (operator fusion: no channel between them), each
/// fed what it reads (see [`Operators`]).
pub struct FusedOperators {
    operators: Vec<Box<dyn Operator>>,
    feeds: Vec<Vec<Feed>>,
    /// One per operator, or none: rows in and out of each, for the job page.
    metrics: Vec<Arc<OperatorMetrics>>,
    /// This task's part of each operator's late-row and held-row gauges (subtasks share them).
    shares: Vec<[GaugeShare; 2]>,
}

impl FusedOperators {
    pub fn new(operators: impl Into<Operators>) -> Self {
        let (operators, feeds) = operators.into().into_parts();
        FusedOperators {
            operators,
            feeds,
            metrics: Vec::new(),
            shares: Vec::new(),
        }
    }

    /// Counts each operator's rows into `metrics` (one per operator, in order; else ignored).
    pub fn with_metrics(mut self, metrics: Vec<Arc<OperatorMetrics>>) -> Self {
        if metrics.len() == self.operators.len() {
            self.shares = vec![Default::default(); metrics.len()];
            self.metrics = metrics;
        }
        self
    }

    fn count(&self, operator: usize, rows_in: u64, output: &[RecordBatch]) {
        if let Some(m) = self.metrics.get(operator) {
            m.rows_in.fetch_add(rows_in, Relaxed);
            let rows_out: u64 = output.iter().map(|b| b.num_rows() as u64).sum();
            m.rows_out.fetch_add(rows_out, Relaxed);
        }
    }

    pub fn operators(&self) -> &[Box<dyn Operator>] {
        &self.operators
    }

    /// Opens every operator (see [`Operator::open`]).
    pub fn open(&mut self) -> Result<(), JobError> {
        self.operators.iter_mut().try_for_each(|op| op.open())
    }

    /// Runs a batch through the operators; returns the batches that come out of the last. The
    /// batch is the rows of every source they read (a pipeline of one input).
    pub fn process_batch(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, JobError> {
        self.pass(Some((None, batch)), None)
    }

    /// Runs a batch of `source`'s rows through the operators that read it, and on.
    pub fn process_input(
        &mut self,
        source: usize,
        batch: RecordBatch,
    ) -> Result<Vec<RecordBatch>, JobError> {
        self.pass(Some((Some(source), batch)), None)
    }

    /// Delivers a watermark to each operator in turn; batches an operator emits flow through the
    /// operators after it before the watermark does, so downstream sees them first.
    pub fn process_watermark(&mut self, watermark_ms: i64) -> Result<Vec<RecordBatch>, JobError> {
        self.pass(None, Some(watermark_ms))
    }

    /// One pass over the operators in order: each takes what its feeds produced in this pass
    /// (the input batch for those reading its source; any source when it is `None`), then the
    /// watermark.
    fn pass(
        &mut self,
        input: Option<(Option<usize>, RecordBatch)>,
        watermark_ms: Option<i64>,
    ) -> Result<Vec<RecordBatch>, JobError> {
        let n = self.operators.len();
        if n == 0 {
            return Ok(input.into_iter().map(|(_, b)| b).collect());
        }
        let mut outputs: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
        for i in 0..n {
            let mut out = Vec::new();
            let mut rows_in = 0;
            for (k, feed) in self.feeds[i].iter().enumerate() {
                let batches = match (*feed, &input) {
                    (Feed::Input(s), Some((from, batch))) if from.is_none_or(|f| f == s) => {
                        vec![batch.clone()]
                    }
                    (Feed::Input(_), _) => Vec::new(),
                    (Feed::Operator(j), _) => std::mem::take(&mut outputs[j]),
                };
                for b in batches {
                    rows_in += b.num_rows() as u64;
                    self.operators[i].process_input(k, b, &mut out)?;
                }
            }
            if let Some(w) = watermark_ms {
                self.operators[i].process_watermark(w, &mut out)?;
            }
            self.count(i, rows_in, &out);
            outputs[i] = out;
        }
        Ok(std::mem::take(&mut outputs[n - 1]))
    }

    /// Side-output rows of all operators since the last call.
    pub fn take_side_output(&mut self) -> Vec<RecordBatch> {
        self.operators
            .iter_mut()
            .flat_map(|op| op.take_side_output())
            .collect()
    }

    /// Late rows dropped by all operators (each operator's own in its metrics).
    pub fn late_rows(&mut self) -> u64 {
        self.sum_per_operator(0, |op| op.late_rows(), |m| &m.late_rows)
    }

    /// Rows held by all operators (each operator's own in its metrics).
    pub fn buffered_rows(&mut self) -> u64 {
        self.sum_per_operator(1, |op| op.buffered_rows(), |m| &m.buffered_rows)
    }

    /// The sum of one figure over the operators, each operator's own stored in its metrics.
    fn sum_per_operator(
        &mut self,
        share: usize,
        figure: impl Fn(&dyn Operator) -> u64,
        counter: impl Fn(&OperatorMetrics) -> &AtomicU64,
    ) -> u64 {
        let mut sum = 0;
        for (i, op) in self.operators.iter().enumerate() {
            let n = figure(op.as_ref());
            if let Some(m) = self.metrics.get(i) {
                self.shares[i][share].set(counter(m), n);
            }
            sum += n;
        }
        sum
    }

    /// Snapshots every operator, in order (`None` for stateless ones).
    pub fn snapshot(&mut self) -> Result<Vec<Option<Vec<u8>>>, JobError> {
        self.operators.iter_mut().map(|op| op.snapshot()).collect()
    }

    /// Restores every operator from a [`FusedOperators::snapshot`] of the same plan.
    pub fn restore(&mut self, snapshots: &[Option<Vec<u8>>]) -> Result<(), JobError> {
        if snapshots.len() != self.operators.len() {
            return Err(JobError::internal("snapshot taken from a different plan"));
        }
        for (op, snap) in self.operators.iter_mut().zip(snapshots) {
            if let Some(bytes) = snap {
                op.restore(bytes)?;
            }
        }
        Ok(())
    }
}
