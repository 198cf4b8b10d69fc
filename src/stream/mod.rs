//! The ground floor: the types every layer above speaks and that import nothing else of ours.
//!
//! What flows along a dataflow edge ([`Message`]; a changelog's row kinds: [`changelog`]), the watermark a pipeline has reached
//! ([`WatermarkCell`]), how a job fails ([`JobError`]), the counters a running job bumps, and the
//! three traits a dataflow is made of: [`Source`] (with the [`SourceOutput`] it writes to),
//! [`Operator`] and [`Sink`]. The runtime wires implementations of them together; connectors
//! and operators implement them without knowing the runtime, the plan or SQL.

pub mod changelog;
mod error;
pub mod ipc;
mod message;
pub mod metrics;
mod operator;
mod sink;
mod source;
mod type_name;
mod watermark;

pub use error::JobError;
pub use message::{CheckpointBarrier, Feed, Message};
pub use operator::Operator;
pub use sink::Sink;
pub use source::{Position, Positions, Source, SourceEnd, SourceOutput};
pub use type_name::flink_type_name;
pub use watermark::{WatermarkCell, lowest_watermark, new_watermark_cell};
