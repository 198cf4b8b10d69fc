//! Streaming operators. Each implements one small trait, [`Operator`]: take a batch, react to a
//! watermark, say what it is. Stateless operators here evaluate DataFusion physical expressions
//! built once at plan time; stateful ones (windows, patterns) hold state between calls and emit
//! when watermarks advance. The runtime never special-cases an operator.

pub mod aggregate;
pub mod evaluate;
pub mod event_time;
mod filter;
pub mod join;
pub mod match_recognize;
mod projection;
mod snapshot;
#[cfg(test)]
pub(crate) mod testing;
pub mod window;

pub use filter::Filter;
pub use projection::Projection;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use arrow::array::RecordBatch;

use crate::stream::metrics::OperatorMetrics;
use crate::stream::{JobError, Operator};

/// Operators applied one after another in the same task (operator fusion: no channel between
/// stateless steps).
pub struct OperatorChain {
    operators: Vec<Box<dyn Operator>>,
    /// One per operator, or none: rows in and out of each, for the job page.
    metrics: Vec<Arc<OperatorMetrics>>,
}

impl OperatorChain {
    pub fn new(operators: Vec<Box<dyn Operator>>) -> Self {
        OperatorChain {
            operators,
            metrics: Vec::new(),
        }
    }

    /// Counts each operator's rows into `metrics` (one per operator, in order; else ignored).
    pub fn with_metrics(mut self, metrics: Vec<Arc<OperatorMetrics>>) -> Self {
        if metrics.len() == self.operators.len() {
            self.metrics = metrics;
        }
        self
    }

    fn count(&self, operator: usize, input: &[RecordBatch], output: &[RecordBatch]) {
        if let Some(m) = self.metrics.get(operator) {
            let rows = |batches: &[RecordBatch]| batches.iter().map(|b| b.num_rows() as u64).sum();
            m.rows_in.fetch_add(rows(input), Relaxed);
            m.rows_out.fetch_add(rows(output), Relaxed);
        }
    }

    pub fn operators(&self) -> &[Box<dyn Operator>] {
        &self.operators
    }

    /// Opens every operator (see [`Operator::open`]).
    pub fn open(&mut self) -> Result<(), JobError> {
        self.operators.iter_mut().try_for_each(|op| op.open())
    }

    /// Runs a batch through every operator; returns the batches that come out of the last.
    pub fn process_batch(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, JobError> {
        let mut current = vec![batch];
        for i in 0..self.operators.len() {
            let mut next = Vec::with_capacity(current.len());
            for b in &current {
                self.operators[i].process_batch(b.clone(), &mut next)?;
            }
            self.count(i, &current, &next);
            current = next;
        }
        Ok(current)
    }

    /// Side-output rows of all operators since the last call.
    pub fn take_side_output(&mut self) -> Vec<RecordBatch> {
        self.operators
            .iter_mut()
            .flat_map(|op| op.take_side_output())
            .collect()
    }

    /// Late rows dropped by all operators of the chain (each operator's own in its metrics).
    pub fn late_rows(&self) -> u64 {
        self.sum_per_operator(|op| op.late_rows(), |m| &m.late_rows)
    }

    /// Rows held by all operators of the chain (each operator's own in its metrics).
    pub fn buffered_rows(&self) -> u64 {
        self.sum_per_operator(|op| op.buffered_rows(), |m| &m.buffered_rows)
    }

    /// The sum of one figure over the operators, each operator's own stored in its metrics.
    fn sum_per_operator(
        &self,
        figure: impl Fn(&dyn Operator) -> u64,
        counter: impl Fn(&OperatorMetrics) -> &AtomicU64,
    ) -> u64 {
        let mut sum = 0;
        for (i, op) in self.operators.iter().enumerate() {
            let n = figure(op.as_ref());
            if let Some(m) = self.metrics.get(i) {
                counter(m).store(n, Relaxed);
            }
            sum += n;
        }
        sum
    }

    /// Snapshots every operator, in order (`None` for stateless ones).
    pub fn snapshot(&mut self) -> Result<Vec<Option<Vec<u8>>>, JobError> {
        self.operators.iter_mut().map(|op| op.snapshot()).collect()
    }

    /// Restores every operator from a [`OperatorChain::snapshot`] of the same plan.
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

    /// Delivers a watermark to each operator in turn; batches an operator emits flow through the
    /// operators after it before the watermark does, so downstream sees them first.
    pub fn process_watermark(&mut self, watermark_ms: i64) -> Result<Vec<RecordBatch>, JobError> {
        let mut carried: Vec<RecordBatch> = Vec::new();
        for i in 0..self.operators.len() {
            let mut next = Vec::new();
            for b in &carried {
                self.operators[i].process_batch(b.clone(), &mut next)?;
            }
            self.operators[i].process_watermark(watermark_ms, &mut next)?;
            self.count(i, &carried, &next);
            carried = next;
        }
        Ok(carried)
    }
}
