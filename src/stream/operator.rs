//! The one trait every streaming operator implements: take a batch, react to a watermark, say
//! what it is, hand over its state. The runtime never special-cases an operator.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::{JobError, WatermarkCell};

/// One step of a dataflow pipeline.
pub trait Operator: Send {
    /// A one-line description for `sluice explain`.
    fn describe(&self) -> String;

    /// Schema of the batches this operator emits.
    fn output_schema(&self) -> SchemaRef;

    /// Prepares what the operator needs before its first batch (a lookup join reads its table).
    /// Called once when the job starts, never while planning: `sluice validate` reads no data.
    fn open(&mut self) -> Result<(), JobError> {
        Ok(())
    }

    /// Processes one batch, pushing what it emits (zero or more batches) into `out`.
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError>;

    /// Processes a batch from the operator's `input`-th feed: a join's left side is 0 and its
    /// right 1, a union's branches come in order. One-input operators take everything in
    /// `process_batch`.
    fn process_input(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        self.process_batch(batch, out)
    }

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

    /// What kind of state the operator keeps (`window-aggregate`, `session-window`,
    /// `match-recognize`), or `None` when it keeps none. Part of the operator's stable id in
    /// checkpoints.
    fn state_kind(&self) -> Option<&'static str> {
        None
    }

    /// The columns of its `input`-th feed that key its state: rows with equal values must meet
    /// in one subtask, rows with different ones may be processed apart. `None`: it keeps no
    /// keyed state (stateless); an empty list: all its rows must meet (a global aggregate).
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        None
    }

    /// Which column of its `input`-th feed its output column `column` is, unchanged, if it is
    /// one: a state key further down is traced back through it to the source's columns.
    fn forwards(&self, _input: usize, _column: usize) -> Option<usize> {
        None
    }

    /// Flink's two-phase aggregation: a local operator for each subtask of the rows, and a
    /// global one merging what they hand on. `None`: it runs whole.
    fn two_phase(&self) -> Option<(Box<dyn Operator>, Box<dyn Operator>)> {
        None
    }

    /// Another instance computing the same, for another subtask of a parallel pipeline. Called
    /// before the job starts (no state yet); `None`: the operator cannot run as subtasks.
    /// `watermark` is the new subtask's own cell (late-row checks read it).
    fn instance(&self, _watermark: &WatermarkCell) -> Option<Box<dyn Operator>> {
        None
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
