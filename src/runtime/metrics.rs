//! A job's counters as a whole: the per-source and per-pipeline atomics of the ground floor,
//! summed for the report, and the live status line of `sluice run`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::checkpoint::CheckpointKind;

pub use crate::stream::metrics::{OperatorMetrics, SinkMetrics, SourceMetrics};

use crate::connectors::ConnectorConfig;
use crate::plan::JobGraph;

#[derive(Debug, Default, Clone)]
pub struct JobMetrics {
    pub sources: Vec<Arc<SourceMetrics>>,
    pub sinks: Vec<Arc<SinkMetrics>>,
    pub checkpoints: Arc<CheckpointStatus>,
    /// The topic partitions a worker runs (`None`: the process runs the whole job).
    pub owned_partitions: Arc<Mutex<Option<Vec<usize>>>>,
}

/// The newest completed checkpoint, for the status line and the run summary.
#[derive(Debug, Default)]
pub struct CheckpointStatus {
    last: Mutex<Option<LastCheckpoint>>,
    /// Where the job's checkpoints go (`None` without checkpoints).
    location: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Copy)]
pub struct LastCheckpoint {
    pub epoch: u64,
    pub kind: CheckpointKind,
    pub completed_at: Instant,
    pub duration: Duration,
    pub bytes: u64,
}

impl CheckpointStatus {
    pub fn completed(&self, epoch: u64, duration: Duration, bytes: u64, kind: CheckpointKind) {
        let last = LastCheckpoint {
            epoch,
            kind,
            completed_at: Instant::now(),
            duration,
            bytes,
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(last);
    }

    pub fn last(&self) -> Option<LastCheckpoint> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_location(&self, location: Option<String>) {
        *self.location.lock().unwrap_or_else(|p| p.into_inner()) = location;
    }

    pub fn location(&self) -> Option<String> {
        self.location
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl LastCheckpoint {
    /// `checkpoint 12 (3 s ago, 41 ms, 1.2 MB)`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} ({} s ago, {} ms, {})",
            self.kind.as_str(),
            self.epoch,
            self.completed_at.elapsed().as_secs(),
            self.duration.as_millis(),
            bytes(self.bytes)
        )
    }
}

/// 1234567 → "1.2 MB".
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
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
            checkpoints: Arc::default(),
            owned_partitions: Arc::default(),
        }
    }

    /// Counters shaped like `graph`: one per source, per pipeline and per operator (with its
    /// description and state id), so the job page can draw the dataflow with its figures.
    pub fn of(graph: &JobGraph) -> Self {
        let sources = graph
            .sources
            .iter()
            .map(|s| {
                Arc::new(SourceMetrics {
                    internal: matches!(s.connector, ConnectorConfig::Repartition(_)),
                    ..SourceMetrics::new(s.table.clone())
                })
            })
            .collect();
        let sinks = graph
            .pipelines
            .iter()
            .zip(graph.pipeline_ids())
            .map(|(p, id)| {
                let operators = p
                    .operators
                    .iter()
                    .zip(p.operator_ids(&id))
                    .enumerate()
                    .map(|(i, (op, state_id))| {
                        Arc::new(OperatorMetrics {
                            name: op.describe(),
                            state_id,
                            reads: p.operators.feeds(i).to_vec(),
                            ..Default::default()
                        })
                    })
                    .collect();
                let writes = |p: &crate::plan::PipelineNode| {
                    let tables: Vec<&str> = p.sinks.iter().map(|s| s.table.as_str()).collect();
                    tables.join(", ")
                };
                // A first stage is named after the tables its second stage writes.
                let name = match p.downstream {
                    Some(next) => format!("{}~1", writes(&graph.pipelines[next])),
                    None => writes(p),
                };
                Arc::new(SinkMetrics {
                    name,
                    sources: p.inputs.clone(),
                    upstream: p.upstream,
                    downstream: p.downstream,
                    operators,
                    ..Default::default()
                })
            })
            .collect();
        JobMetrics {
            sources,
            sinks,
            checkpoints: Arc::default(),
            owned_partitions: Arc::default(),
        }
    }

    /// Marks the job as a worker's, running these partitions of its topic.
    pub fn set_owned_partitions(&self, partitions: &[usize]) {
        *self.owned_partitions.lock().expect("not poisoned") = Some(partitions.to_vec());
    }

    pub fn owned_partitions(&self) -> Option<Vec<usize>> {
        self.owned_partitions.lock().expect("not poisoned").clone()
    }

    pub fn rows_in(&self) -> u64 {
        self.sources
            .iter()
            .filter(|s| !s.internal)
            .map(|s| s.rows_in.load(Relaxed))
            .sum()
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
        if let Some(c) = m.checkpoints.last() {
            line.push_str(&format!("  │ {}", c.describe()));
        }
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
        m.checkpoints.completed(
            7,
            Duration::from_millis(41),
            3 << 20,
            CheckpointKind::Checkpoint,
        );
        let line = StatusLine::new().render(&m, Duration::from_secs(1));
        assert!(
            line.contains("│ checkpoint 7 (0 s ago, 41 ms, 3.0 MB)"),
            "{line}"
        );
    }
}
