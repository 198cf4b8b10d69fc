//! The streaming runtime: tokio tasks joined by bounded channels.
//!
//! Each source runs as one task; each pipeline (the operators of one INSERT, fused, and its sink)
//! as another, or as several subtasks to which the source routes rows by key
//! ([`exchange`]). Channels carry [`Message`](crate::stream::Message)s: Arrow batches and control
//! messages. A bounded channel is the backpressure: a slow sink fills its channel, the source's
//! `send` waits, the source stops reading. Bounded inputs end with a watermark at +∞ (closing
//! every window) and `EndOfInput`; a stop request (Ctrl-C) ends sources at once, and sinks flush
//! what they hold before the job ends.

mod coordinator;
pub mod exchange;
mod job;
pub mod metrics;
mod mini_batch;
mod pipeline;
mod rescale;
pub mod restore;
mod source_output;
pub mod watermark;

pub use job::{CheckpointSetup, JobReport, RuntimeOptions, fresh_run_id, run_job};
pub use source_output::TableOutput;
