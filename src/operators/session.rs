//! Session window aggregation: `SESSION(TABLE t PARTITION BY key, DESCRIPTOR(ts), gap)`.
//!
//! Each row opens the window `[ts, ts + gap)`; windows of the same key merge when they touch
//! (bounds inclusive, as in Flink), so two rows exactly one gap apart share a session. A
//! session's aggregates are DataFusion `Accumulator`s; when a late-arriving row bridges two
//! sessions, their partial states are merged (`state` → `merge_batch`). A session is emitted
//! once, when the watermark reaches its end − 1, with `window_start` = first row's ts and
//! `window_end` = last row's ts + gap. Rows of a batch are grouped per session, so accumulators
//! are updated a run of rows at a time.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Field, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;

use super::Operator;
use super::window::{GroupColumn, WindowAggregateCall, event_times};
use crate::runtime::JobError;

pub struct SessionAggregate {
    gap: i64,
    time_column: usize,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
    layout: Vec<GroupColumn>,
    calls: Vec<WindowAggregateCall>,
    schema: SchemaRef,
    /// Open sessions per key, sorted by start and disjoint.
    sessions: HashMap<OwnedRow, Vec<Session>>,
    watermark: i64,
    late_rows: u64,
}

struct Session {
    start: i64,
    /// Exclusive: last row's time + gap.
    end: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
}

impl SessionAggregate {
    pub fn new(
        gap: i64,
        time_column: usize,
        keys: Vec<(Arc<dyn PhysicalExpr>, Field)>,
        layout: Vec<GroupColumn>,
        calls: Vec<WindowAggregateCall>,
        schema: SchemaRef,
    ) -> Result<Self, JobError> {
        let fields = keys
            .iter()
            .map(|(_, f)| SortField::new(f.data_type().clone()))
            .collect();
        Ok(SessionAggregate {
            gap,
            time_column,
            keys: keys.into_iter().map(|(e, _)| e).collect(),
            converter: RowConverter::new(fields)?,
            layout,
            calls,
            schema,
            sessions: HashMap::new(),
            watermark: i64::MIN,
            late_rows: 0,
        })
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>, JobError> {
        Ok(self
            .calls
            .iter()
            .map(|c| c.function.create_accumulator())
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Puts `t` into `key`'s sessions, merging the sessions it touches; returns the index of
    /// the session holding it.
    fn assign(&mut self, key: &OwnedRow, t: i64) -> Result<usize, JobError> {
        let gap = self.gap;
        let fresh = self.new_accumulators()?;
        let list = self.sessions.entry(key.clone()).or_default();
        let touching: Vec<usize> = (0..list.len())
            .filter(|&i| t <= list[i].end && t + gap >= list[i].start)
            .collect();
        let Some(&first) = touching.first() else {
            let at = list.partition_point(|s| s.start < t);
            list.insert(
                at,
                Session {
                    start: t,
                    end: t + gap,
                    accumulators: fresh,
                },
            );
            return Ok(at);
        };
        // Merge every touched session into the first (they are adjacent in the sorted list).
        for &other in touching[1..].iter().rev() {
            let absorbed = list.remove(other);
            let target = &mut list[first];
            target.start = target.start.min(absorbed.start);
            target.end = target.end.max(absorbed.end);
            for (acc, mut from) in target.accumulators.iter_mut().zip(absorbed.accumulators) {
                let state: Vec<ArrayRef> = from
                    .state()?
                    .iter()
                    .map(ScalarValue::to_array)
                    .collect::<Result<_, _>>()?;
                acc.merge_batch(&state)?;
            }
        }
        let s = &mut list[first];
        s.start = s.start.min(t);
        s.end = s.end.max(t + gap);
        Ok(first)
    }

    fn emit(&mut self, watermark: i64) -> Result<Option<RecordBatch>, JobError> {
        let mut closed: Vec<(OwnedRow, Session)> = Vec::new();
        self.sessions.retain(|key, list| {
            let mut i = 0;
            while i < list.len() {
                if list[i].end - 1 <= watermark {
                    closed.push((key.clone(), list.remove(i)));
                } else {
                    i += 1;
                }
            }
            !list.is_empty()
        });
        if closed.is_empty() {
            return Ok(None);
        }
        closed.sort_by(|a, b| (a.1.end, &a.0).cmp(&(b.1.end, &b.0)));
        let rows = closed.len();
        let keys = self
            .converter
            .convert_rows(closed.iter().map(|(k, _)| k.row()))?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (i, g) in self.layout.iter().enumerate() {
            let target = self.schema.field(i).data_type();
            let time = |f: fn(&Session) -> i64| -> Result<ArrayRef, JobError> {
                let v: Vec<ScalarValue> = closed
                    .iter()
                    .map(|(_, s)| ScalarValue::TimestampMillisecond(Some(f(s)), None))
                    .collect();
                let a = ScalarValue::iter_to_array(v)?;
                Ok(arrow::compute::cast(&a, target)?)
            };
            columns.push(match g {
                GroupColumn::Key(k) => keys[*k].clone(),
                GroupColumn::WindowStart => time(|s| s.start)?,
                GroupColumn::WindowEnd => time(|s| s.end)?,
                GroupColumn::WindowTime => time(|s| s.end - 1)?,
            });
        }
        for c in 0..self.calls.len() {
            let values = closed
                .iter_mut()
                .map(|(_, s)| s.accumulators[c].evaluate())
                .collect::<Result<Vec<_>, _>>()?;
            let target = self.schema.field(self.layout.len() + c).data_type();
            let array = ScalarValue::iter_to_array(values)?;
            columns.push(if array.data_type() == target {
                array
            } else {
                arrow::compute::cast(&array, target)?
            });
        }
        debug_assert!(columns.iter().all(|c| c.len() == rows));
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

impl Operator for SessionAggregate {
    fn describe(&self) -> String {
        let calls: Vec<String> = self
            .calls
            .iter()
            .map(|c| c.function.name().to_string())
            .collect();
        format!(
            "SessionAggregate: gap={}ms, keys={}, aggregates=[{}]",
            self.gap,
            self.keys.len(),
            calls.join(", ")
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let rows = batch.num_rows();
        let times = event_times(batch.column(self.time_column))?;
        let key_arrays = self
            .keys
            .iter()
            .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(rows)))
            .collect::<Result<Vec<_>, _>>()?;
        let key_rows = self.converter.convert_columns(&key_arrays)?;
        // Rows in (key, time) order, late ones dropped.
        let mut order: Vec<(usize, i64)> = Vec::with_capacity(rows);
        for (i, t) in times.iter().enumerate() {
            match t {
                Some(t) if t + self.gap - 1 > self.watermark => order.push((i, *t)),
                _ => self.late_rows += 1,
            }
        }
        order.sort_by(|a, b| {
            key_rows
                .row(a.0)
                .cmp(&key_rows.row(b.0))
                .then(a.1.cmp(&b.1))
        });

        // Assign rows to sessions; a later row may merge the session an earlier one went to, so
        // runs are cut per (key, session start after all merges of this batch).
        let mut assigned: Vec<(OwnedRow, usize, i64)> = Vec::with_capacity(order.len());
        for &(i, t) in &order {
            let key = key_rows.row(i).owned();
            self.assign(&key, t)?;
            assigned.push((key, i, t));
        }
        let mut args = Vec::with_capacity(self.calls.len());
        for c in &self.calls {
            let a = c
                .function
                .expressions()
                .iter()
                .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(rows)))
                .collect::<Result<Vec<_>, _>>()?;
            let f = match &c.filter {
                Some(f) => Some(f.evaluate(&batch)?.into_array(rows)?),
                None => None,
            };
            args.push((a, f));
        }
        let mut run: Vec<u32> = Vec::new();
        let mut current: Option<(OwnedRow, usize)> = None;
        for (key, i, t) in assigned {
            let list = &self.sessions[&key];
            let idx = list
                .iter()
                .position(|s| s.start <= t && t < s.end)
                .expect("assigned above");
            if current
                .as_ref()
                .is_some_and(|(k, x)| *k != key || *x != idx)
            {
                let (k, x) = current.take().expect("checked");
                self.update(&k, x, &run, &args)?;
                run.clear();
            }
            current = Some((key, idx));
            run.push(i as u32);
        }
        if let Some((k, x)) = current {
            self.update(&k, x, &run, &args)?;
        }
        Ok(())
    }

    fn process_watermark(
        &mut self,
        watermark_ms: i64,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        if watermark_ms <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark_ms;
        if let Some(b) = self.emit(watermark_ms)? {
            out.push(b);
        }
        Ok(())
    }
}

type CallInputs = (Vec<ArrayRef>, Option<ArrayRef>);

impl SessionAggregate {
    /// Feeds rows `run` of the batch to session `idx` of `key`.
    fn update(
        &mut self,
        key: &OwnedRow,
        idx: usize,
        run: &[u32],
        args: &[CallInputs],
    ) -> Result<(), JobError> {
        let indices = UInt32Array::from(run.to_vec());
        let session = &mut self.sessions.get_mut(key).expect("assigned")[idx];
        for (acc, (values, filter)) in session.accumulators.iter_mut().zip(args) {
            let mut picked: Vec<ArrayRef> = values
                .iter()
                .map(|v| take(v, &indices, None))
                .collect::<Result<_, _>>()?;
            if let Some(f) = filter {
                let mask = take(f, &indices, None)?;
                let mask = mask.as_boolean();
                picked = picked
                    .iter()
                    .map(|v| arrow::compute::filter(v, mask))
                    .collect::<Result<_, _>>()?;
            }
            acc.update_batch(&picked)?;
        }
        Ok(())
    }
}
