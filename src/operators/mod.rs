//! Streaming operators. Each implements one small trait, [`Operator`]: take a batch, react to a
//! watermark, say what it is. Stateless operators here evaluate DataFusion physical expressions
//! built once at plan time; stateful ones (windows, patterns) hold state between calls and emit
//! when watermarks advance. The runtime never special-cases an operator.

mod filter;
pub mod late_rows;
mod lookup_join;
pub mod pattern;
mod projection;
pub mod session;
mod snapshot;
pub mod window;

pub use filter::{Filter, evaluate_predicate};
pub use lookup_join::{LookupJoin, LookupJoinSpec};
pub use projection::Projection;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::runtime::JobError;

/// One step of a dataflow pipeline.
pub trait Operator: Send {
    /// A one-line description for `sluice explain`.
    fn describe(&self) -> String;

    /// Schema of the batches this operator emits.
    fn output_schema(&self) -> SchemaRef;

    /// Processes one batch, pushing what it emits (zero or more batches) into `out`.
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError>;

    /// The event-time watermark advanced to `watermark_ms`: stateful operators emit what it
    /// completes. Stateless operators have nothing to do.
    fn process_watermark(
        &mut self,
        _watermark_ms: i64,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        Ok(())
    }

    /// Rows dropped so far because they arrived after the watermark closed their window.
    fn late_rows(&self) -> u64 {
        0
    }

    /// Rows the operator holds waiting for event time to pass or for a pattern to complete.
    fn buffered_rows(&self) -> u64 {
        0
    }

    /// Rows routed away from the main output since the last call (late rows for a side output).
    fn take_side_output(&mut self) -> Vec<RecordBatch> {
        Vec::new()
    }

    /// The operator's state as bytes (Arrow IPC), for a checkpoint; `None` when stateless.
    /// Taking a snapshot does not change what the operator emits afterwards.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        Ok(None)
    }

    /// Replaces the operator's state with a snapshot taken from an operator built by the same
    /// plan.
    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), JobError> {
        Err(JobError::internal(format!(
            "{} has no state to restore",
            self.describe()
        )))
    }
}

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
