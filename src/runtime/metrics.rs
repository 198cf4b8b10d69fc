//! A job's counters as a whole: the per-source and per-pipeline atomics of the ground floor,
//! summed for the report, and the live status line of `sluice run`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

pub use crate::stream::metrics::{SinkMetrics, SourceMetrics};

#[derive(Debug, Default, Clone)]
pub struct JobMetrics {
    pub sources: Vec<Arc<SourceMetrics>>,
    pub sinks: Vec<Arc<SinkMetrics>>,
}

impl JobMetrics {
    pub fn new(
        sources: impl IntoIterator<Item = String>,
        sinks: impl IntoIterator<Item = String>,
    ) -> Self {
        JobMetrics {
            sources: sources
                .into_iter()
                .map(|name| Arc::new(SourceMetrics::new(name)))
                .collect(),
            sinks: sinks
                .into_iter()
                .map(|name| {
                    Arc::new(SinkMetrics {
                        name,
                        ..Default::default()
                    })
                })
                .collect(),
        }
    }

    pub fn rows_in(&self) -> u64 {
        self.sources.iter().map(|s| s.rows_in.load(Relaxed)).sum()
    }

    pub fn rows_out(&self) -> u64 {
        self.sinks.iter().map(|s| s.rows_out.load(Relaxed)).sum()
    }

    pub fn late_rows(&self) -> u64 {
        self.sinks.iter().map(|s| s.late_rows.load(Relaxed)).sum()
    }

    pub fn buffered_rows(&self) -> u64 {
        self.sinks
            .iter()
            .map(|s| s.buffered_rows.load(Relaxed))
            .sum()
    }

    pub fn bad_records(&self) -> u64 {
        self.sources
            .iter()
            .map(|s| s.bad_records.load(Relaxed))
            .sum()
    }
}

/// Renders `in 52,301/s  out 1,204/s  │ telemetry: wm 08:01:43 lag 1,203`, rates over `elapsed`
/// since the previous call.
pub struct StatusLine {
    last_in: u64,
    last_out: u64,
}

impl Default for StatusLine {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusLine {
    pub fn new() -> Self {
        StatusLine {
            last_in: 0,
            last_out: 0,
        }
    }

    pub fn render(&mut self, m: &JobMetrics, elapsed: Duration) -> String {
        let (rows_in, rows_out) = (m.rows_in(), m.rows_out());
        let secs = elapsed.as_secs_f64().max(1e-3);
        let rate_in = (rows_in - self.last_in.min(rows_in)) as f64 / secs;
        let rate_out = (rows_out - self.last_out.min(rows_out)) as f64 / secs;
        self.last_in = rows_in;
        self.last_out = rows_out;
        let mut line = format!(
            "in {}/s  out {}/s  (total {} in, {} out",
            group(rate_in as u64),
            group(rate_out as u64),
            group(rows_in),
            group(rows_out)
        );
        let bad = m.bad_records();
        if bad > 0 {
            line.push_str(&format!(", {} bad", group(bad)));
        }
        let late = m.late_rows();
        if late > 0 {
            line.push_str(&format!(", {} late", group(late)));
        }
        let buffered = m.buffered_rows();
        if buffered > 0 {
            line.push_str(&format!(", {} buffered", group(buffered)));
        }
        line.push(')');
        for s in &m.sources {
            let wm = s.watermark.load(Relaxed);
            let lag = s.lag.load(Relaxed);
            let mut parts = Vec::new();
            if let Some(t) = (wm != i64::MIN && wm != i64::MAX)
                .then(|| chrono::DateTime::from_timestamp_millis(wm))
                .flatten()
            {
                parts.push(format!("wm {}", t.format("%H:%M:%S")));
            }
            if lag >= 0 {
                parts.push(format!("lag {}", group(lag as u64)));
            }
            if !parts.is_empty() {
                line.push_str(&format!("  │ {}: {}", s.name, parts.join(" ")));
            }
        }
        line
    }
}

/// 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn status_line_shows_rates_and_lag() {
        let m = JobMetrics::new(["telemetry".to_string()], ["out".to_string()]);
        m.sources[0].rows_in.store(2000, Relaxed);
        m.sources[0].lag.store(1500, Relaxed);
        m.sinks[0].rows_out.store(10, Relaxed);
        m.sinks[0].buffered_rows.store(4200, Relaxed);
        let line = StatusLine::new().render(&m, Duration::from_secs(2));
        assert!(line.starts_with("in 1,000/s  out 5/s"), "{line}");
        assert!(line.contains(", 4,200 buffered)"), "{line}");
        assert!(line.contains("telemetry: lag 1,500"), "{line}");
    }
}
