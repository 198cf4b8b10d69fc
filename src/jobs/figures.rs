//! A job's live figures as the API shows them: its dataflow with every source's, operator's and
//! pipeline's counters, its last checkpoint, and a few minutes of samples from which listings
//! take rates and the console draws its watermark and lag chart.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;

use crate::plan::STAGE_INPUT;
use crate::runtime::metrics::JobMetrics;
use crate::sql::user_facing;
use crate::stream::Feed;

/// How often a running job's counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept per job: ten minutes.
const SAMPLES_KEPT: usize = 300;
/// Rates are taken over about this long.
const RATE_SPAN_MS: i64 = 10_000;

/// The dataflow of a job's current run with its counters.
#[derive(Debug, Clone, Serialize)]
pub struct Dataflow {
    pub sources: Vec<SourceFigures>,
    pub pipelines: Vec<PipelineFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceFigures {
    pub name: String,
    pub rows_in: u64,
    pub bad_records: u64,
    /// `None` before the first watermark (or without event time).
    pub watermark_ms: Option<i64>,
    /// Records behind the end of the log (Kafka); `None` when unknown.
    pub lag: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineFigures {
    /// The tables it writes.
    pub name: String,
    /// Index into [`Dataflow::sources`] of the (first) source it reads.
    pub source: usize,
    /// Every source it reads (two for a join of two tables).
    pub sources: Vec<usize>,
    /// For a first stage: the pipeline its rows go to, instead of sinks.
    pub downstream: Option<usize>,
    pub rows_out: u64,
    pub late_rows: u64,
    pub buffered_rows: u64,
    /// How full its input queue is, 0 to 1 (near 1: it holds its source back).
    pub backpressure: f64,
    pub operators: Vec<OperatorFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperatorFigures {
    pub name: String,
    pub state_id: Option<String>,
    /// What it reads: `{"source": i}` or `{"operator": j}` (an earlier one of the pipeline).
    pub reads: Vec<ReadFigure>,
    pub rows_in: u64,
    pub rows_out: u64,
    pub late_rows: u64,
    pub buffered_rows: u64,
}

/// One thing an operator reads.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFigure {
    Source(usize),
    Operator(usize),
    /// The rows of another pipeline: the first stage of a pipeline cut in two.
    Stage(usize),
}

/// The newest completed checkpoint of the current run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointFigures {
    pub id: u64,
    pub kind: &'static str,
    pub age_s: u64,
    pub duration_ms: u64,
    pub bytes: u64,
}

/// One sample of a job's counters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Wall-clock time, ms since the epoch.
    pub at_ms: i64,
    pub rows_in: u64,
    pub rows_out: u64,
    /// The lowest source watermark (the job's event-time progress).
    pub watermark_ms: Option<i64>,
    /// Records behind, summed over the sources that know.
    pub lag: Option<i64>,
}

impl Dataflow {
    pub fn of(m: &JobMetrics) -> Self {
        let sources = m
            .sources
            .iter()
            .map(|s| SourceFigures {
                name: s.name.clone(),
                rows_in: s.rows_in.load(Relaxed),
                bad_records: s.bad_records.load(Relaxed),
                watermark_ms: known_watermark(s.watermark.load(Relaxed)),
                lag: known_lag(s.lag.load(Relaxed)),
            })
            .collect();
        let pipelines = m
            .sinks
            .iter()
            .map(|p| PipelineFigures {
                name: p.name.clone(),
                source: p.sources.first().copied().unwrap_or_default(),
                sources: p.sources.clone(),
                downstream: p.downstream,
                rows_out: p.rows_out.load(Relaxed),
                late_rows: p.late_rows.load(Relaxed),
                buffered_rows: p.buffered_rows.load(Relaxed),
                backpressure: p.backpressure(),
                operators: p
                    .operators
                    .iter()
                    .map(|o| OperatorFigures {
                        name: user_facing(&o.name),
                        state_id: o.state_id.clone(),
                        reads: o
                            .reads
                            .iter()
                            .map(|f| match *f {
                                Feed::Input(STAGE_INPUT) => {
                                    ReadFigure::Stage(p.upstream.unwrap_or_default())
                                }
                                Feed::Input(s) => ReadFigure::Source(s),
                                Feed::Operator(j) => ReadFigure::Operator(j),
                            })
                            .collect(),
                        rows_in: o.rows_in.load(Relaxed),
                        rows_out: o.rows_out.load(Relaxed),
                        late_rows: o.late_rows.load(Relaxed),
                        buffered_rows: o.buffered_rows.load(Relaxed),
                    })
                    .collect(),
            })
            .collect();
        Dataflow { sources, pipelines }
    }
}

impl CheckpointFigures {
    pub fn of(m: &JobMetrics) -> Option<Self> {
        let last = m.checkpoints.last()?;
        Some(CheckpointFigures {
            id: last.epoch,
            kind: last.kind.as_str(),
            age_s: last.completed_at.elapsed().as_secs(),
            duration_ms: last.duration.as_millis() as u64,
            bytes: last.bytes,
        })
    }
}

impl Sample {
    pub fn of(m: &JobMetrics, at_ms: i64) -> Self {
        let watermark_ms = m
            .sources
            .iter()
            .map(|s| known_watermark(s.watermark.load(Relaxed)))
            .min()
            .flatten();
        let lags: Vec<i64> = m
            .sources
            .iter()
            .filter_map(|s| known_lag(s.lag.load(Relaxed)))
            .collect();
        Sample {
            at_ms,
            rows_in: m.rows_in(),
            rows_out: m.rows_out(),
            watermark_ms,
            lag: (!lags.is_empty()).then(|| lags.iter().sum()),
        }
    }
}

fn known_watermark(ms: i64) -> Option<i64> {
    (ms != i64::MIN).then_some(ms)
}

fn known_lag(lag: i64) -> Option<i64> {
    (lag >= 0).then_some(lag)
}

/// The last minutes of a job's samples.
#[derive(Debug, Default, Clone)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    pub fn push(&mut self, sample: Sample) {
        // A new run counts from zero again: its samples start a new history.
        if self
            .samples
            .back()
            .is_some_and(|last| sample.rows_in < last.rows_in || sample.rows_out < last.rows_out)
        {
            self.samples.clear();
        }
        if self.samples.len() == SAMPLES_KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }

    /// Rows in and out per second over the last ten seconds or so (against `now`, the job's
    /// current counters); `None` without an older sample.
    pub fn rates(&self, now: &Sample) -> Option<(f64, f64)> {
        let since = self
            .samples
            .iter()
            .rev()
            .find(|s| now.at_ms - s.at_ms >= RATE_SPAN_MS)
            .or_else(|| self.samples.front())?;
        let seconds = (now.at_ms - since.at_ms) as f64 / 1000.0;
        if seconds < 1.0 || now.rows_in < since.rows_in {
            return None;
        }
        Some((
            (now.rows_in - since.rows_in) as f64 / seconds,
            now.rows_out.saturating_sub(since.rows_out) as f64 / seconds,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, rows_in: u64, rows_out: u64) -> Sample {
        Sample {
            at_ms,
            rows_in,
            rows_out,
            watermark_ms: None,
            lag: None,
        }
    }

    #[test]
    fn rates_over_the_last_ten_seconds() {
        let mut h = History::default();
        for i in 0..10 {
            h.push(sample(i * 2000, i as u64 * 1000, i as u64 * 10));
        }
        // 18 s: the newest sample at least 10 s older is at 8 s (4,000 in, 40 out).
        let (r_in, r_out) = h.rates(&sample(18_000, 9000, 90)).unwrap();
        assert_eq!((r_in, r_out), (500.0, 5.0));
    }

    #[test]
    fn a_new_run_starts_a_new_history() {
        let mut h = History::default();
        h.push(sample(0, 100, 1));
        h.push(sample(2000, 200, 2));
        h.push(sample(4000, 5, 0));
        assert_eq!(h.samples().len(), 1);
        assert!(h.rates(&sample(4000, 5, 0)).is_none());
    }
}
