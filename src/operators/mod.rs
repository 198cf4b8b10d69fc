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

use arrow::array::RecordBatch;

use crate::stream::{JobError, Operator};

/// Operators applied one after another in the same task (operator fusion: no channel between
/// stateless steps).
pub struct OperatorChain {
    operators: Vec<Box<dyn Operator>>,
}

impl OperatorChain {
    pub fn new(operators: Vec<Box<dyn Operator>>) -> Self {
        OperatorChain { operators }
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
        for op in &mut self.operators {
            let mut next = Vec::with_capacity(current.len());
            for b in current {
                op.process_batch(b, &mut next)?;
            }
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

    /// Late rows dropped by all operators of the chain.
    pub fn late_rows(&self) -> u64 {
        self.operators.iter().map(|op| op.late_rows()).sum()
    }

    /// Rows held by all operators of the chain.
    pub fn buffered_rows(&self) -> u64 {
        self.operators.iter().map(|op| op.buffered_rows()).sum()
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
        for op in &mut self.operators {
            let mut next = Vec::new();
            for b in carried {
                op.process_batch(b, &mut next)?;
            }
            op.process_watermark(watermark_ms, &mut next)?;
            carried = next;
        }
        Ok(carried)
    }
}
