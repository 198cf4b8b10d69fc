//! Sluice: Flink-SQL pipelines as a streaming dataflow over Arrow, in one Rust binary.
//!
//! `sql` parses and plans a script, `plan` is the dataflow graph it becomes, `runtime` runs that
//! graph as tokio tasks with bounded channels, `operators` are the steps inside, `connectors`
//! read and write the outside world, `formats` turn bytes into Arrow batches and back.

pub mod config;
pub mod connectors;
pub mod formats;
pub mod generate;
pub mod operators;
pub mod plan;
pub mod runtime;
pub mod sql;
