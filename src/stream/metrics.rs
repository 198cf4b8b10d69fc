//! Counters a running job updates: rows in per source, rows out per pipeline, bad records,
//! watermark and Kafka lag. Plain atomics: cheap to bump once per batch, read by the status line
//! and the job report.

use std::sync::atomic::{AtomicI64, AtomicU64};

#[derive(Debug, Default)]
pub struct SourceMetrics {
    pub name: String,
    pub rows_in: AtomicU64,
    pub bad_records: AtomicU64,
    /// Latest emitted watermark in ms, `i64::MIN` before the first.
    pub watermark: AtomicI64,
    /// Records behind the end of the log (Kafka), -1 when unknown or not a log.
    pub lag: AtomicI64,
}

impl SourceMetrics {
    pub fn new(name: String) -> Self {
        SourceMetrics {
            name,
            watermark: AtomicI64::new(i64::MIN),
            lag: AtomicI64::new(-1),
            ..Default::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub name: String,
    pub rows_out: AtomicU64,
    /// Rows the pipeline's window operators dropped as late.
    pub late_rows: AtomicU64,
    /// Rows the pipeline's operators hold (waiting for the watermark, or in pattern matches in
    /// progress): the state to watch for MATCH_RECOGNIZE without WITHIN.
    pub buffered_rows: AtomicU64,
}
