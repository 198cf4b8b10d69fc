//! ClickHouse sink options (docs/connectors.md), read once when the table is created.

use std::time::Duration;

use crate::options::OptionError;
use crate::options::OptionReader;

#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub table: String,
    pub username: String,
    pub password: String,
    /// Rows per INSERT.
    pub batch_size: usize,
    /// Buffered rows are inserted at least this often.
    pub flush_interval: Duration,
    /// Retries of a failed INSERT (network errors, timeouts) before the job fails.
    pub max_retries: u32,
    /// INSERTs sent but not yet acknowledged, at most (then the pipeline waits).
    pub max_in_flight: usize,
    pub create_table: bool,
    /// Engine of a created table; `None`: ReplacingMergeTree with a PRIMARY KEY, else MergeTree.
    pub engine: Option<String>,
    /// ORDER BY of a created table; `None`: the PRIMARY KEY, else `tuple()`.
    pub order_by: Option<String>,
    /// The sink table's PRIMARY KEY columns.
    pub primary_key: Vec<String>,
    /// Deduplicated inserts (`insert_deduplication_token`); off for at-least-once.
    pub exactly_once: bool,
}

/// The options `from_options` reads, with their choices (for the shell's completion).
pub const OPTIONS: &[(&str, &[&str])] = &[
    ("url", &[]),
    ("database", &[]),
    ("table", &[]),
    ("username", &[]),
    ("password", &[]),
    ("sink.batch-size", &[]),
    ("sink.flush-interval", &[]),
    ("sink.max-retries", &[]),
    ("sink.max-in-flight", &[]),
    ("sink.delivery-guarantee", GUARANTEES),
    ("sink.create-table", &["true", "false"]),
    ("sink.create-table.engine", &[]),
    ("sink.create-table.order-by", &[]),
    ("sink.parallelism", &["1"]),
];

const GUARANTEES: &[&str] = &["exactly-once", "at-least-once"];

impl ClickHouseConfig {
    pub fn from_options(opts: &OptionReader, primary_key: &[String]) -> Result<Self, OptionError> {
        opts.sink_parallelism()?;
        let url = opts.required("url")?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(opts.error(
                "url",
                format!("'url' = '{url}' must be an HTTP(S) URL such as 'http://127.0.0.1:8123'"),
            ));
        }
        let batch_size = opts.parse_or("sink.batch-size", 100_000usize, "a row count")?;
        if batch_size == 0 {
            return Err(opts.error("sink.batch-size", "'sink.batch-size' must be at least 1"));
        }
        let max_in_flight = opts.parse_or("sink.max-in-flight", 2usize, "a number of inserts")?;
        if max_in_flight == 0 {
            return Err(opts.error(
                "sink.max-in-flight",
                "'sink.max-in-flight' must be at least 1",
            ));
        }
        let guarantee = opts.choice_or("sink.delivery-guarantee", GUARANTEES, "exactly-once")?;
        Ok(ClickHouseConfig {
            url,
            database: opts
                .optional("database")
                .unwrap_or_else(|| "default".to_string()),
            table: opts
                .optional("table")
                .unwrap_or_else(|| opts.table().to_string()),
            username: opts
                .optional("username")
                .unwrap_or_else(|| "default".to_string()),
            password: opts.optional("password").unwrap_or_default(),
            batch_size,
            flush_interval: opts
                .duration_opt("sink.flush-interval")?
                .unwrap_or(Duration::from_secs(1)),
            max_retries: opts.parse_or("sink.max-retries", 10u32, "a retry count")?,
            max_in_flight,
            create_table: opts.bool_or("sink.create-table", false)?,
            engine: opts.optional("sink.create-table.engine"),
            order_by: opts.optional("sink.create-table.order-by"),
            primary_key: primary_key.to_vec(),
            exactly_once: guarantee == "exactly-once",
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "clickhouse {} table={}.{} batch={} {}",
            self.url,
            self.database,
            self.table,
            self.batch_size,
            // Exactly-once needs checkpoints too (on by default for unbounded jobs).
            if self.exactly_once {
                "exactly-once with checkpoints"
            } else {
                "at-least-once"
            }
        )
    }
}
