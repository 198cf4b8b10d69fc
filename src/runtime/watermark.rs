//! Event-time watermarks per source split (Kafka partition, file), combined as their minimum.
//!
//! A split's watermark is the largest value of the table's WATERMARK expression seen on it (for
//! `ts - INTERVAL '2' SECOND`: the latest event time minus two seconds). The source's watermark is
//! the minimum over its splits, so a slow partition holds event time back — except a split idle for
//! longer than the idle timeout, which stops counting until it sees data again. A split that has
//! seen nothing yet holds the watermark back like Flink does (unless idle).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{cast, max};
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use datafusion::physical_expr::PhysicalExpr;

use crate::stream::{JobError, lowest_watermark};

pub struct WatermarkTracker {
    /// The WATERMARK expression; `None` when the records carry each split's watermark.
    expr: Option<Arc<dyn PhysicalExpr>>,
    /// When the expression is the event-time column, or it minus (plus) a constant: the
    /// column's index. Then the largest watermark of a batch is the expression at the row of
    /// the largest time, evaluated once instead of for every row (interval arithmetic on
    /// timestamps goes through calendar dates).
    monotonic_in: Option<usize>,
    idle_timeout: Option<Duration>,
    splits: Vec<SplitState>,
    emitted: i64,
}

#[derive(Clone)]
struct SplitState {
    watermark: Option<i64>,
    last_data: Instant,
}

impl WatermarkTracker {
    pub fn new(expr: Arc<dyn PhysicalExpr>, idle_timeout: Option<Duration>) -> Self {
        WatermarkTracker {
            monotonic_in: monotonic_in(&expr),
            expr: Some(expr),
            idle_timeout,
            splits: Vec::new(),
            emitted: i64::MIN,
        }
    }

    /// For a source whose records carry each split's watermark ([`Self::raise`]).
    pub fn from_records() -> Self {
        WatermarkTracker {
            expr: None,
            monotonic_in: None,
            idle_timeout: None,
            splits: Vec::new(),
            emitted: i64::MIN,
        }
    }

    /// Moves `split` to `watermark` (never back); returns a new combined watermark if it
    /// advanced.
    pub fn raise(&mut self, split: usize, watermark: i64, now: Instant) -> Option<i64> {
        let state = self.split(split);
        state.last_data = now;
        state.watermark = Some(state.watermark.map_or(watermark, |w| w.max(watermark)));
        self.advance(now)
    }

    fn split(&mut self, split: usize) -> &mut SplitState {
        if split >= self.splits.len() {
            let fresh = SplitState {
                watermark: None,
                last_data: Instant::now(),
            };
            self.splits.resize(split + 1, fresh);
        }
        &mut self.splits[split]
    }

    /// Declares that the source has `n` splits (so unseen ones hold the watermark back).
    pub fn ensure_splits(&mut self, n: usize) {
        if n > 0 {
            self.split(n - 1);
        }
    }

    /// Starts `split` at a watermark it reached before (restored from a checkpoint).
    pub fn restore(&mut self, split: usize, watermark: i64) {
        let state = self.split(split);
        state.watermark = Some(state.watermark.map_or(watermark, |w| w.max(watermark)));
    }

    /// Each split's watermark (`None`: it has seen no row yet), by split index.
    pub fn split_watermarks(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.splits
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.watermark?)))
    }

    /// Updates `split` from a batch of rows; returns a new combined watermark if it advanced.
    pub fn observe(
        &mut self,
        split: usize,
        batch: &RecordBatch,
        now: Instant,
    ) -> Result<Option<i64>, JobError> {
        let Some(expr) = &self.expr else {
            return Ok(None);
        };
        let rows = match self.monotonic_in.and_then(|c| latest_row(batch.column(c))) {
            Some(at) => batch.slice(at, 1),
            None => batch.clone(),
        };
        let values = expr.evaluate(&rows)?.into_array(rows.num_rows())?;
        let millis = match values.data_type() {
            DataType::Timestamp(TimeUnit::Millisecond, None) => values,
            _ => cast(&values, &DataType::Timestamp(TimeUnit::Millisecond, None))?,
        };
        let batch_max = max(millis.as_primitive::<TimestampMillisecondType>());
        let state = self.split(split);
        state.last_data = now;
        if let Some(m) = batch_max {
            state.watermark = Some(state.watermark.map_or(m, |w| w.max(m)));
        }
        Ok(self.advance(now))
    }

    /// Re-evaluates idleness at `now`; returns a new combined watermark if it advanced (idle
    /// splits count as [`lowest_watermark`] says).
    pub fn advance(&mut self, now: Instant) -> Option<i64> {
        let idle = |s: &SplitState| {
            self.idle_timeout
                .is_some_and(|t| now.duration_since(s.last_data) >= t)
        };
        let combined = lowest_watermark(self.splits.iter().map(|s| (idle(s), s.watermark)));
        match combined {
            Some(w) if w > self.emitted => {
                self.emitted = w;
                Some(w)
            }
            _ => None,
        }
    }

    /// Whether every split is idle at `now` (never without an idle timeout).
    pub fn all_idle(&self, now: Instant) -> bool {
        let Some(timeout) = self.idle_timeout else {
            return false;
        };
        !self.splits.is_empty()
            && self
                .splits
                .iter()
                .all(|s| now.duration_since(s.last_data) >= timeout)
    }

    pub fn current(&self) -> Option<i64> {
        (self.emitted != i64::MIN).then_some(self.emitted)
    }
}

/// The column `expr` only shifts by a constant (`ts`, `ts - INTERVAL …`, `ts + INTERVAL …`).
fn monotonic_in(expr: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    if let Some(c) = expr.downcast_ref::<Column>() {
        return Some(c.index());
    }
    let b = expr.downcast_ref::<BinaryExpr>()?;
    let column = b.left().downcast_ref::<Column>()?;
    let constant = b.right().is::<Literal>();
    (constant && matches!(b.op(), Operator::Minus | Operator::Plus)).then(|| column.index())
}

/// The index of the row with the latest millisecond timestamp in `times`, if it is one and has
/// a non-NULL value.
fn latest_row(times: &dyn arrow::array::Array) -> Option<usize> {
    let times = times.as_primitive_opt::<TimestampMillisecondType>()?;
    let mut best: Option<(usize, i64)> = None;
    for (i, t) in times.iter().enumerate() {
        if let Some(t) = t
            && best.is_none_or(|(_, b)| t > b)
        {
            best = Some((i, t));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;
    use arrow::datatypes::{Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    fn batch(ts: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        )]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampMillisecondArray::from(ts.to_vec()))],
        )
        .unwrap()
    }

    fn tracker(idle: Option<Duration>) -> WatermarkTracker {
        WatermarkTracker::new(Arc::new(Column::new("ts", 0)), idle)
    }

    #[test]
    fn minimum_over_splits_and_never_backwards() {
        let now = Instant::now();
        let mut t = tracker(None);
        t.ensure_splits(2);
        assert_eq!(
            t.observe(0, &batch(&[100, 300]), now).unwrap(),
            None,
            "split 1 has no data yet"
        );
        assert_eq!(t.observe(1, &batch(&[200]), now).unwrap(), Some(200));
        assert_eq!(
            t.observe(1, &batch(&[150]), now).unwrap(),
            None,
            "out-of-order rows do not go back"
        );
        assert_eq!(t.observe(1, &batch(&[500]), now).unwrap(), Some(300));
    }

    #[test]
    fn a_restored_split_that_sees_no_more_rows_holds_back_only_to_its_watermark() {
        let now = Instant::now();
        let mut t = tracker(None);
        t.ensure_splits(2);
        // Split 1 read its last row before the checkpoint; it was restored at 400.
        t.restore(1, 400);
        assert_eq!(t.observe(0, &batch(&[300]), now).unwrap(), Some(300));
        assert_eq!(t.observe(0, &batch(&[900]), now).unwrap(), Some(400));
        let splits: Vec<(usize, i64)> = t.split_watermarks().collect();
        assert_eq!(splits, [(0, 900), (1, 400)]);
        // A restored watermark never lowers what a split has seen since.
        t.restore(0, 100);
        assert_eq!(t.split_watermarks().next(), Some((0, 900)));
    }

    #[test]
    fn idle_split_stops_holding_back() {
        let start = Instant::now();
        let mut t = tracker(Some(Duration::from_secs(5)));
        t.ensure_splits(2);
        assert_eq!(t.observe(0, &batch(&[1000]), start).unwrap(), None);
        assert_eq!(
            t.advance(start + Duration::from_secs(6)),
            Some(1000),
            "both splits went idle at once: split 0 releases what it reached, split 1 saw nothing"
        );
        assert_eq!(
            t.observe(0, &batch(&[2000]), start + Duration::from_secs(6))
                .unwrap(),
            Some(2000)
        );
        assert!(
            !t.all_idle(start + Duration::from_secs(7)),
            "split 0 just had rows"
        );
        assert!(
            t.all_idle(start + Duration::from_secs(12)),
            "no split had rows for 5 s"
        );
        assert_eq!(
            t.observe(1, &batch(&[1500]), start + Duration::from_secs(13))
                .unwrap(),
            None,
            "split 1 counts again once it has rows, behind split 0"
        );
        t.observe(1, &batch(&[1800]), start + Duration::from_secs(20))
            .unwrap();
        assert_eq!(
            t.advance(start + Duration::from_secs(30)),
            None,
            "all idle: the minimum of what each reached (1800) is behind what was emitted"
        );
        assert!(!tracker(None).all_idle(start + Duration::from_secs(3600)));
    }

    #[test]
    fn a_shifted_time_is_evaluated_at_the_latest_row_only() {
        use datafusion::logical_expr::Operator;
        use datafusion::physical_expr::expressions::{BinaryExpr, Literal};
        let two_seconds = datafusion::common::ScalarValue::IntervalMonthDayNano(Some(
            arrow::datatypes::IntervalMonthDayNano::new(0, 0, 2_000_000_000),
        ));
        let expr: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("ts", 0)),
            Operator::Minus,
            Arc::new(Literal::new(two_seconds)),
        ));
        assert_eq!(monotonic_in(&expr), Some(0));
        let mut t = WatermarkTracker::new(expr, None);
        let now = Instant::now();
        assert_eq!(
            t.observe(0, &batch(&[5000, 9000, 7000]), now).unwrap(),
            Some(7000)
        );
        assert_eq!(t.observe(0, &batch(&[8000]), now).unwrap(), None);
    }
}
