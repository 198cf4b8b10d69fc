//! What flows along a dataflow edge: Arrow batches and the control messages between them.

use arrow::array::RecordBatch;

#[derive(Debug, Clone)]
pub enum Message {
    Batch(RecordBatch),
    /// Event time has advanced: no later row will have an event time ≤ this (milliseconds).
    Watermark(i64),
    /// A checkpoint barrier (aligned, Chandy–Lamport): operators snapshot their state when it
    /// passes and pipelines flush their sinks. Nothing injects one yet: sources will, once
    /// checkpoints exist.
    Barrier(CheckpointBarrier),
    /// The upstream has ended; nothing follows.
    EndOfInput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBarrier {
    pub epoch: u64,
}
