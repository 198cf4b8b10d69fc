//! `/metrics`: every job's counters in Prometheus' text format, names prefixed `sluice_`.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use crate::jobs::{JobManager, JobStatus};

/// One `# HELP`/`# TYPE` header per metric, then its samples.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        self.samples.push((labels.join(","), value));
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text of `/metrics`.
pub fn render(jobs: &JobManager) -> String {
    let mut status = Family::new(
        "sluice_job_status",
        "gauge",
        "1 for the job's current status",
    );
    let mut rows_in = Family::new(
        "sluice_source_rows_in_total",
        "counter",
        "Rows read by a source",
    );
    let mut bad = Family::new(
        "sluice_source_bad_records_total",
        "counter",
        "Records a source skipped as bad",
    );
    let mut watermark = Family::new(
        "sluice_source_watermark_ms",
        "gauge",
        "A source's event-time watermark (ms since the epoch)",
    );
    let mut lag = Family::new(
        "sluice_source_lag_records",
        "gauge",
        "Records behind the end of the log (Kafka)",
    );
    let mut rows_out = Family::new(
        "sluice_pipeline_rows_out_total",
        "counter",
        "Rows a pipeline wrote to its sinks",
    );
    let mut late = Family::new(
        "sluice_pipeline_late_rows_total",
        "counter",
        "Rows a pipeline's operators dropped as late",
    );
    let mut buffered = Family::new(
        "sluice_pipeline_buffered_rows",
        "gauge",
        "Rows a pipeline's operators hold in state",
    );
    let mut backpressure = Family::new(
        "sluice_pipeline_backpressure_ratio",
        "gauge",
        "How full a pipeline's input queue is (near 1: it holds its source back)",
    );
    let mut op_in = Family::new(
        "sluice_operator_rows_in_total",
        "counter",
        "Rows into an operator",
    );
    let mut op_out = Family::new(
        "sluice_operator_rows_out_total",
        "counter",
        "Rows out of an operator",
    );
    let mut op_late = Family::new(
        "sluice_operator_late_rows_total",
        "counter",
        "Rows an operator dropped as late",
    );
    let mut op_buffered = Family::new(
        "sluice_operator_buffered_rows",
        "gauge",
        "Rows an operator holds in state",
    );
    let mut ck_epoch = Family::new(
        "sluice_checkpoint_last_epoch",
        "gauge",
        "The newest completed checkpoint",
    );
    let mut ck_age = Family::new(
        "sluice_checkpoint_age_seconds",
        "gauge",
        "Time since the newest checkpoint completed",
    );
    let mut ck_duration = Family::new(
        "sluice_checkpoint_duration_seconds",
        "gauge",
        "How long the newest checkpoint took",
    );
    let mut ck_size = Family::new(
        "sluice_checkpoint_size_bytes",
        "gauge",
        "Size of the newest checkpoint",
    );
    let mut owned = Family::new(
        "sluice_worker_partition_owned",
        "gauge",
        "1 for each topic partition this worker of the job runs",
    );
    for (record, metrics) in jobs.metrics() {
        let job = record.id.as_str();
        for s in [
            JobStatus::Created,
            JobStatus::Running,
            JobStatus::Restarting,
            JobStatus::Failed,
            JobStatus::Canceled,
            JobStatus::Finished,
            JobStatus::Stopped,
        ] {
            let name = serde_json::to_value(s).expect("a status serializes");
            let name = name.as_str().unwrap_or_default();
            status.add(
                &[("job", job), ("name", &record.name), ("status", name)],
                f64::from(u8::from(record.status == s)),
            );
        }
        let Some(m) = metrics else { continue };
        for s in &m.sources {
            let labels = [("job", job), ("source", s.name.as_str())];
            rows_in.add(&labels, s.rows_in.load(Relaxed) as f64);
            bad.add(&labels, s.bad_records.load(Relaxed) as f64);
            let w = s.watermark.load(Relaxed);
            if w != i64::MIN && w != i64::MAX {
                watermark.add(&labels, w as f64);
            }
            let l = s.lag.load(Relaxed);
            if l >= 0 {
                lag.add(&labels, l as f64);
            }
        }
        for p in &m.sinks {
            let labels = [("job", job), ("pipeline", p.name.as_str())];
            rows_out.add(&labels, p.rows_out.load(Relaxed) as f64);
            late.add(&labels, p.late_rows.load(Relaxed) as f64);
            buffered.add(&labels, p.buffered_rows.load(Relaxed) as f64);
            backpressure.add(&labels, p.backpressure());
            for (i, o) in p.operators.iter().enumerate() {
                // Stateful operators by their checkpoint id, the others by position.
                let id = o
                    .state_id
                    .clone()
                    .unwrap_or_else(|| format!("{}/{i}", p.name));
                let labels = [
                    ("job", job),
                    ("pipeline", p.name.as_str()),
                    ("operator", id.as_str()),
                    ("description", o.name.as_str()),
                ];
                op_in.add(&labels, o.rows_in.load(Relaxed) as f64);
                op_out.add(&labels, o.rows_out.load(Relaxed) as f64);
                op_late.add(&labels, o.late_rows.load(Relaxed) as f64);
                op_buffered.add(&labels, o.buffered_rows.load(Relaxed) as f64);
            }
        }
        for p in m.owned_partitions().unwrap_or_default() {
            owned.add(&[("job", job), ("partition", &p.to_string())], 1.0);
        }
        if let Some(c) = m.checkpoints.last() {
            let labels = [("job", job)];
            ck_epoch.add(&labels, c.epoch as f64);
            ck_age.add(&labels, c.completed_at.elapsed().as_secs_f64());
            ck_duration.add(&labels, c.duration.as_secs_f64());
            ck_size.add(&labels, c.bytes as f64);
        }
    }
    let mut out = String::new();
    for f in [
        status,
        rows_in,
        bad,
        watermark,
        lag,
        rows_out,
        late,
        buffered,
        backpressure,
        op_in,
        op_out,
        op_late,
        op_buffered,
        ck_epoch,
        ck_age,
        ck_duration,
        ck_size,
        owned,
    ] {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value) in &f.samples {
            let _ = writeln!(out, "{}{{{labels}}} {value}", f.name);
        }
    }
    out
}
