//! Sluice: Flink-SQL pipelines as a streaming dataflow over Arrow, in one Rust binary.
//!
//! Layers, each importing only those below it:
//!
//! ```text
//! server     the job server's REST API over the jobs of a state directory
//! shell      the interactive SQL shell: a session of statements, its line editor
//! signals    Ctrl-C and SIGTERM, listened for from the start
//! jobs       a job run to its end: restored, restarted by its strategy (used by every front end)
//! sql        parses and plans a script (Flink's dialect, DataFusion) into a job graph
//! plan       the job graph as data: sources, pipelines of operators, sinks; EXPLAIN
//! runtime    runs a job graph as tokio tasks joined by bounded channels; takes checkpoints
//! operators  the steps inside a pipeline (windows, MATCH_RECOGNIZE, joins, filters)
//! connectors read and write the outside world (Kafka, files, ClickHouse, generators)
//! formats    bytes to Arrow batches and back (JSON, CSV, raw)
//! checkpoint checkpoint storage (file://, s3://), manifests, checkpoint and restart settings
//! options    typed reading of a table's WITH options
//! stream     the ground floor: messages, watermarks, errors, the Source/Operator/Sink traits
//! ```

pub mod checkpoint;
pub mod config;
pub mod connectors;
pub mod formats;
pub mod generate;
pub mod jobs;
pub mod operators;
pub mod options;
pub mod plan;
pub mod runtime;
pub mod server;
pub mod shell;
pub mod signals;
pub mod sql;
pub mod stream;
