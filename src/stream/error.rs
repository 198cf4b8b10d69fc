//! The error a running job fails with. Each variant says where it happened in the user's terms
//! (which table, which record) so the message alone is enough to act on.

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A record that cannot be decoded and `*.ignore-parse-errors` is off.
    #[error(
        "cannot decode record at {location}: {reason}\n  record: {record}\n  (set '{option}' = 'true' to skip and count such records)"
    )]
    BadRecord {
        location: String,
        reason: String,
        record: String,
        option: String,
    },
    #[error("source `{table}`: {message}")]
    Source { table: String, message: String },
    #[error("sink `{table}`: {message}")]
    Sink { table: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A checkpoint could not be taken or restored; the message says which and why.
    #[error("{0}")]
    Checkpoint(String),
    /// A worker's partition was claimed by another worker: its tasks here must stop without
    /// checkpointing it.
    #[error("{0}")]
    PartitionTaken(String),
    /// The task at the other end of a channel ended (it failed, and reports its own error).
    #[error("a connected task stopped")]
    ChannelClosed,
    #[error("internal error: {0}")]
    Internal(String),
}

impl JobError {
    /// Whether restarting the job from its last checkpoint can get past this error. A bad
    /// record would be read again, a checkpoint that does not fit would not fit again.
    pub fn is_restartable(&self) -> bool {
        !matches!(self, JobError::BadRecord { .. } | JobError::Checkpoint(_))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        JobError::Internal(message.into())
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        JobError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn source(table: &str, message: impl Into<String>) -> Self {
        JobError::Source {
            table: table.to_string(),
            message: message.into(),
        }
    }

    pub fn sink(table: &str, message: impl Into<String>) -> Self {
        JobError::Sink {
            table: table.to_string(),
            message: message.into(),
        }
    }
}
