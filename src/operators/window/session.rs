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

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;

use super::GroupColumn;
use crate::operators::aggregate::{AggregateCall, CallInputs, evaluate_calls};
use crate::operators::evaluate::{evaluate_all, plain_columns};
use crate::operators::event_time::event_times;
use crate::stream::{JobError, Operator};

pub struct SessionAggregate {
    gap: i64,
    time_column: usize,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
    /// What `converter` was built from (a converter is not `Clone`).
    key_fields: Vec<SortField>,
    layout: Vec<GroupColumn>,
    calls: Vec<AggregateCall>,
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

/// Puts `t` into a key's sessions (sorted, disjoint), merging the sessions it touches.
fn assign(
    list: &mut Vec<Session>,
    t: i64,
    gap: i64,
    fresh: impl FnOnce() -> Result<Vec<Box<dyn Accumulator>>, JobError>,
) -> Result<(), JobError> {
    // Sessions are sorted and disjoint, so the touched ones are contiguous.
    let first = list.partition_point(|s| s.end < t);
    let last = list.partition_point(|s| s.start <= t + gap);
    if first >= last {
        list.insert(
            first,
            Session {
                start: t,
                end: t + gap,
                accumulators: fresh()?,
            },
        );
        return Ok(());
    }
    for absorbed in list.drain(first + 1..last).collect::<Vec<_>>() {
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
    Ok(())
}

impl SessionAggregate {
    pub fn new(
        gap: i64,
        time_column: usize,
        keys: Vec<(Arc<dyn PhysicalExpr>, Field)>,
        layout: Vec<GroupColumn>,
        calls: Vec<AggregateCall>,
        schema: SchemaRef,
    ) -> Result<Self, JobError> {
        let fields: Vec<SortField> = keys
            .iter()
            .map(|(_, f)| SortField::new(f.data_type().clone()))
            .collect();
        Ok(SessionAggregate {
            gap,
            time_column,
            keys: keys.into_iter().map(|(e, _)| e).collect(),
            converter: RowConverter::new(fields.clone())?,
            key_fields: fields,
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
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        Some(plain_columns(&self.keys))
    }

    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        super::forwarded_key(&self.layout, &self.keys, column)
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(SessionAggregate {
            gap: self.gap,
            time_column: self.time_column,
            keys: self.keys.clone(),
            converter: RowConverter::new(self.key_fields.clone()).ok()?,
            key_fields: self.key_fields.clone(),
            layout: self.layout.clone(),
            calls: self.calls.clone(),
            schema: self.schema.clone(),
            sessions: HashMap::new(),
            watermark: i64::MIN,
            late_rows: 0,
        }))
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("session-window")
    }

    fn describe(&self) -> String {
        let calls: Vec<String> = self.calls.iter().map(|c| c.label.clone()).collect();
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

    fn late_rows(&self) -> u64 {
        self.late_rows
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let rows = batch.num_rows();
        let times = event_times(batch.column(self.time_column))?;
        let key_arrays = evaluate_all(&self.keys, &batch)?;
        let key_rows = self.converter.convert_columns(&key_arrays)?;
        // Rows in (key, time) order, late ones dropped.
        let mut order: Vec<(usize, i64)> = Vec::with_capacity(rows);
        for (i, t) in times.iter().enumerate() {
            match t {
                Some(t) if t + self.gap - 1 > self.watermark => order.push((i, *t)),
                _ => self.late_rows += 1,
            }
        }
        // Sort by a small integer per distinct key (first appearance), not by the row bytes.
        let mut ids: HashMap<arrow::row::Row<'_>, u32> = HashMap::new();
        let key_id: Vec<u32> = (0..rows)
            .map(|i| {
                let next = ids.len() as u32;
                *ids.entry(key_rows.row(i)).or_insert(next)
            })
            .collect();
        order.sort_unstable_by_key(|&(i, t)| (key_id[i], t));
        let args = evaluate_calls(&self.calls, &batch)?;
        let calls: Vec<_> = self.calls.iter().map(|c| c.function.clone()).collect();
        let fresh = || {
            calls
                .iter()
                .map(|f| f.create_accumulator())
                .collect::<Result<Vec<_>, _>>()
                .map_err(JobError::from)
        };
        // One key at a time: place its rows into sessions (merging as needed), then feed each
        // session the run of rows that fell into it.
        let mut at = 0;
        while at < order.len() {
            let key = key_rows.row(order[at].0);
            let id = key_id[order[at].0];
            let end = at
                + order[at..]
                    .iter()
                    .position(|(i, _)| key_id[*i] != id)
                    .unwrap_or(order.len() - at);
            let group = &order[at..end];
            let list = self.sessions.entry(key.owned()).or_default();
            for &(_, t) in group {
                assign(list, t, self.gap, fresh)?;
            }
            // Both the rows and the sessions are sorted by time: walk them together.
            let mut s = 0;
            let mut run: Vec<u32> = Vec::new();
            for &(i, t) in group {
                while t >= list[s].end {
                    s += 1;
                    if !run.is_empty() {
                        feed(&mut list[s - 1], &run, &args)?;
                        run.clear();
                    }
                }
                run.push(i as u32);
            }
            if !run.is_empty() {
                feed(&mut list[s], &run, &args)?;
            }
            at = end;
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let mut fields: Vec<Field> = self
            .converter
            .convert_rows(std::iter::empty())?
            .iter()
            .enumerate()
            .map(|(i, a)| Field::new(format!("k{i}"), a.data_type().clone(), true))
            .collect();
        fields.push(Field::new("__start", DataType::Int64, false));
        fields.push(Field::new("__end", DataType::Int64, false));
        for (i, c) in self.calls.iter().enumerate() {
            for f in c.function.state_fields()? {
                fields.push(Field::new(
                    format!("s{i}_{}", f.name()),
                    f.data_type().clone(),
                    true,
                ));
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let mut keys = Vec::new();
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        let mut states: Vec<Vec<Vec<ScalarValue>>> =
            self.calls.iter().map(|_| Vec::new()).collect();
        for (key, list) in self.sessions.iter_mut() {
            for s in list.iter_mut() {
                keys.push(key.row());
                starts.push(s.start);
                ends.push(s.end);
                for (c, acc) in s.accumulators.iter_mut().enumerate() {
                    // `state` of a session accumulator leaves it usable (it is not a group emit).
                    states[c].push(acc.state()?);
                }
            }
        }
        let mut batches = Vec::new();
        if !starts.is_empty() {
            let mut columns = self.converter.convert_rows(keys)?;
            columns.push(Arc::new(Int64Array::from(starts)));
            columns.push(Arc::new(Int64Array::from(ends)));
            for per_call in states {
                let width = per_call.first().map_or(0, Vec::len);
                for f in 0..width {
                    columns.push(ScalarValue::iter_to_array(
                        per_call.iter().map(|st| st[f].clone()),
                    )?);
                }
            }
            let columns = columns
                .into_iter()
                .zip(schema.fields())
                .map(|(c, f)| {
                    if c.data_type() == f.data_type() {
                        Ok(c)
                    } else {
                        arrow::compute::cast(&c, f.data_type())
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        let metadata = [
            ("watermark".to_string(), self.watermark.to_string()),
            ("late_rows".to_string(), self.late_rows.to_string()),
        ]
        .into_iter()
        .chain(crate::operators::snapshot::keyed_by_keys(0, &self.keys))
        .collect();
        Ok(Some(crate::operators::snapshot::encode(
            &schema, metadata, &batches,
        )?))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), JobError> {
        let (metadata, batches) = crate::operators::snapshot::decode(snapshot)?;
        self.watermark = crate::operators::snapshot::meta(&metadata, "watermark")?;
        self.late_rows = crate::operators::snapshot::meta(&metadata, "late_rows")?;
        self.sessions.clear();
        let nkeys = self.keys.len();
        let state_counts = self
            .calls
            .iter()
            .map(|c| c.function.state_fields().map(|f| f.len()))
            .collect::<Result<Vec<_>, _>>()?;
        for b in batches {
            let key_rows = self.converter.convert_columns(&b.columns()[..nkeys])?;
            let starts = b.column(nkeys).as_primitive::<Int64Type>().clone();
            let ends = b.column(nkeys + 1).as_primitive::<Int64Type>().clone();
            for r in 0..b.num_rows() {
                let mut accumulators = self.new_accumulators()?;
                let mut at = nkeys + 2;
                for (acc, n) in accumulators.iter_mut().zip(&state_counts) {
                    let state: Vec<ArrayRef> = b.columns()[at..at + n]
                        .iter()
                        .map(|c| c.slice(r, 1))
                        .collect();
                    acc.merge_batch(&state)?;
                    at += n;
                }
                let list = self.sessions.entry(key_rows.row(r).owned()).or_default();
                list.push(Session {
                    start: starts.value(r),
                    end: ends.value(r),
                    accumulators,
                });
                list.sort_by_key(|s| s.start);
            }
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

/// Feeds rows `run` of the batch to a session's accumulators.
fn feed(session: &mut Session, run: &[u32], args: &[CallInputs]) -> Result<(), JobError> {
    let indices = UInt32Array::from(run.to_vec());
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

#[cfg(test)]
mod tests {
    use datafusion::functions_aggregate::count::count_udaf;

    use super::*;
    use crate::operators::testing::{Harness, call, col, lines, schema};

    /// `SELECT k, window_start, window_end, COUNT(v) FROM TABLE(SESSION(TABLE t PARTITION BY k,
    /// DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY k, window_start, window_end`
    fn sessions_of_5s() -> Harness<SessionAggregate> {
        let input = schema("k:str ts:ts v:i64");
        let output = schema("k:str window_start:ts window_end:ts c:i64");
        let op = SessionAggregate::new(
            5_000,
            1,
            vec![(col("k", &input), output.field(0).clone())],
            vec![
                GroupColumn::Key(0),
                GroupColumn::WindowStart,
                GroupColumn::WindowEnd,
            ],
            vec![call(count_udaf(), vec![col("v", &input)], &input, "c")],
            output,
        )
        .expect("a session aggregate");
        Harness::new(op)
    }

    #[test]
    fn a_session_ends_a_gap_after_its_last_row() {
        let mut h = sessions_of_5s();
        h.push(
            "k:str ts:ts     v:i64
             a     00:00:01  1
             a     00:00:03  1
             b     00:00:02  1
             a     00:00:20  1",
        );
        // b's session is [2 s, 7 s), a's first [1 s, 8 s): each closes when the watermark
        // reaches its end - 1 ms.
        assert!(h.watermark("00:00:06.998").take().is_empty());
        assert_eq!(
            h.watermark("00:00:06.999").take(),
            lines("b 00:00:02 00:00:07 1")
        );
        assert!(h.watermark("00:00:07.998").take().is_empty());
        assert_eq!(
            h.watermark("00:00:07.999").take(),
            lines("a 00:00:01 00:00:08 2")
        );
        assert_eq!(h.watermark("+inf").take(), lines("a 00:00:20 00:00:25 1"));
    }

    #[test]
    fn a_row_between_two_sessions_merges_them() {
        let mut h = sessions_of_5s();
        h.push("k:str ts:ts v:i64\n a 00:00:01 1\n a 00:00:10 1");
        h.watermark("00:00:02");
        // 00:00:05 reaches both [1, 6) and [10, 15): one session [1, 15) of three rows.
        h.push("k:str ts:ts v:i64\n a 00:00:05 1");
        assert_eq!(h.watermark("+inf").take(), lines("a 00:00:01 00:00:15 3"));
    }

    #[test]
    fn rows_of_a_closed_session_are_late() {
        let mut h = sessions_of_5s();
        h.push("k:str ts:ts v:i64\n a 00:00:01 1");
        h.watermark("00:00:10");
        assert_eq!(h.take(), lines("a 00:00:01 00:00:06 1"));
        h.push("k:str ts:ts v:i64\n a 00:00:02 1");
        assert_eq!(h.op.late_rows(), 1);
        assert!(h.watermark("+inf").take().is_empty());
    }
}
