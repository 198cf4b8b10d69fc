//! `kafka`: topics as tables, through librdkafka (`rdkafka`, bundled librdkafka).
//!
//! The source assigns itself every partition of the topic(s), as Flink's KafkaSource does, and
//! starts each where `scan.startup.mode` says (committed group offsets, earliest, latest, a
//! timestamp, or given offsets); with `scan.bounded.mode = 'latest-offset'` it stops at the end
//! offsets seen at start. Each partition is a split with its own watermark. Offsets are
//! committed to the consumer group as rows are handed downstream (for monitoring and for
//! `group-offsets` restarts; exactly-once restarts come with checkpoints).
//!
//! The sink is an idempotent producer (`enable.idempotence`, `acks=all`) and waits for every
//! delivery report before a flush returns: at-least-once.

mod broker_log;
mod config;
mod group;
mod sink;
mod source;

pub use config::{BoundedMode, KafkaConfig, OPTIONS, StartupMode};
pub use group::{GroupMember, Revocation};
pub use sink::KafkaSink;
pub use source::KafkaSource;
