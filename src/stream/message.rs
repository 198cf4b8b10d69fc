//! What flows along a dataflow edge: Arrow batches and the control messages between them.

use arrow::array::RecordBatch;

#[derive(Debug, Clone)]
pub enum Message {
    Batch(RecordBatch),
    /// Event time has advanced: no later row will have an event time ≤ this (milliseconds).
    Watermark(i64),
    /// A checkpoint barrier (aligned, Chandy–Lamport), placed by a source between two batches:
    /// everything before it belongs to the checkpoint. Pipelines snapshot their operators and
    /// set their sinks' rows of the epoch aside when it passes.
    Barrier(CheckpointBarrier),
    /// Every split of the source has been idle past its idle timeout: until the source sends
    /// rows again, its watermark does not hold back a pipeline that reads other sources too.
    Idle,
    /// The upstream has ended; nothing follows. `stopped`: it was stopped (Ctrl-C, a handover
    /// to another worker), not read to its end, and a later run goes on from its checkpoint: its
    /// watermark still holds event time back, or a pipeline reading other inputs too would pass
    /// it while they deliver their last barrier, and the checkpoint would hold a watermark ahead
    /// of this input's rows still to come (late after the restore).
    EndOfInput {
        stopped: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBarrier {
    pub epoch: u64,
}

/// Where an operator of a pipeline reads its rows: a source (its index in the job), or an
/// earlier operator of the pipeline (its index there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Input(usize),
    Operator(usize),
}
