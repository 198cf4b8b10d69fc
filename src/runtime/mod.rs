//! The streaming runtime: tokio tasks joined by bounded channels.
//!
//! Each source runs as one task; each pipeline (the operators of one INSERT, fused, and its sink)
//! as another. Channels carry [`Message`]s: Arrow batches and control messages. A bounded channel
//! is the backpressure: a slow sink fills its channel, the source's `send` waits, the source stops
//! reading. Bounded inputs end with a watermark at +∞ (closing every window) and `EndOfInput`;
//! a stop request (Ctrl-C) ends sources at once, and sinks flush what they hold before the job ends.

mod error;
mod job;
pub mod metrics;
mod source_output;
pub mod watermark;

pub use error::JobError;
pub use job::{JobReport, RuntimeOptions, run_job};
pub use source_output::{SourceEnd, SourceOutput};

use arrow::array::RecordBatch;

/// What flows along a dataflow edge.
#[derive(Debug, Clone)]
pub enum Message {
    Batch(RecordBatch),
    /// Event time has advanced: no later row will have an event time ≤ this (milliseconds).
    Watermark(i64),
    /// A checkpoint barrier (aligned, Chandy–Lamport): operators snapshot their state when it
    /// passes. Sources inject it once checkpointing is enabled.
    Barrier(CheckpointBarrier),
    /// The upstream has ended; nothing follows.
    EndOfInput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBarrier {
    pub epoch: u64,
}
