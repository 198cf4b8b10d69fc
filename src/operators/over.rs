//! OVER aggregations on event time, as Flink runs them: `agg(...) OVER (PARTITION BY keys
//! ORDER BY rowtime ROWS BETWEEN n PRECEDING AND CURRENT ROW)`, `RANGE BETWEEN INTERVAL …
//! PRECEDING AND CURRENT ROW`, or from `UNBOUNDED PRECEDING`.
//!
//! A row is held until the watermark passes its time (rows of one key may come out of order
//! until then), then rows are taken in event-time order — arrival order among equal times — and
//! each leaves with its aggregates over its frame. Per key the operator keeps the frame's rows
//! (their arguments) and DataFusion's sliding accumulators: a row entering is added, one falling
//! out of the frame retracted (first, then the new row added, as Flink does: the same floating
//! point sums). `RANGE` frames take rows of equal time together (peers) and a key whose frame
//! has passed is forgotten; unbounded frames keep only their accumulators. Rows at or behind
//! the watermark when they arrive are late: dropped and counted, as in Flink.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::row::OwnedRow;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;

use crate::operators::aggregate::AggregateCall;
use crate::operators::evaluate::{Keys, evaluate_all};
use crate::operators::event_time::{HeldRows, event_times};
use crate::operators::snapshot;
use crate::stream::{JobError, Operator};

/// Which rows before the current one an aggregate sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW`: the row and the `n` before it.
    Rows(u64),
    /// `RANGE BETWEEN INTERVAL … PRECEDING AND CURRENT ROW`: rows at most this many
    /// milliseconds older, and the row's peers.
    Range(i64),
    /// `ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`.
    UnboundedRows,
    /// `RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW` (also an OVER with ORDER BY and no
    /// frame).
    UnboundedRange,
}

impl Frame {
    fn bounded(self) -> bool {
        matches!(self, Frame::Rows(_) | Frame::Range(_))
    }

    /// Whether rows of equal time share their aggregates.
    fn peers(self) -> bool {
        matches!(self, Frame::Range(_) | Frame::UnboundedRange)
    }

    fn describe(self) -> String {
        match self {
            Frame::Rows(n) => format!("ROWS {n} PRECEDING"),
            Frame::Range(ms) => format!("RANGE {ms} ms PRECEDING"),
            Frame::UnboundedRows => "ROWS UNBOUNDED PRECEDING".into(),
            Frame::UnboundedRange => "RANGE UNBOUNDED PRECEDING".into(),
        }
    }
}

pub struct OverAggregate {
    partition: Keys,
    time_column: usize,
    frame: Frame,
    calls: Vec<AggregateCall>,
    input: SchemaRef,
    schema: SchemaRef,
    /// Rows not yet emitted (their time is after the watermark).
    pending: HeldRows,
    partitions: HashMap<OwnedRow, Partition>,
    watermark: i64,
    late_rows: u64,
}

/// One key's frame.
struct Partition {
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Bounded frames: the rows in the frame, oldest first, each with its time and every call's
    /// arguments (one-row arrays).
    rows: VecDeque<(i64, Vec<Vec<ArrayRef>>)>,
}

impl OverAggregate {
    /// `calls` over rows of `input`, per `partition` key, ordered by `time_column`; the output is
    /// the input's columns and then one per call (`output`).
    pub fn new(
        partition: Vec<Arc<dyn PhysicalExpr>>,
        input: &SchemaRef,
        time_column: usize,
        frame: Frame,
        calls: Vec<AggregateCall>,
        output: SchemaRef,
    ) -> Result<Self, JobError> {
        let op = OverAggregate {
            partition: Keys::new(partition, input)?,
            time_column,
            frame,
            calls,
            input: input.clone(),
            schema: output,
            pending: HeldRows::new(time_column),
            partitions: HashMap::new(),
            watermark: i64::MIN,
            late_rows: 0,
        };
        // A bounded frame retracts rows leaving it: every function must be able to.
        if frame.bounded() {
            for (call, acc) in op.calls.iter().zip(op.new_accumulators()?) {
                if !acc.supports_retract_batch() {
                    return Err(JobError::internal(format!(
                        "{} cannot run over a bounded OVER frame (it cannot retract rows); use an UNBOUNDED PRECEDING frame",
                        call.label
                    )));
                }
            }
        }
        Ok(op)
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>, JobError> {
        self.calls
            .iter()
            .map(|c| {
                Ok(if self.frame.bounded() {
                    c.function.create_sliding_accumulator()?
                } else {
                    c.function.create_accumulator()?
                })
            })
            .collect()
    }

    /// Emits the held rows whose time the watermark has passed.
    fn emit(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), JobError> {
        let Some(ready) = self.pending.take_due(&self.input, self.watermark)? else {
            return Ok(());
        };
        let times: Vec<i64> = event_times(ready.column(self.time_column))?
            .into_iter()
            .map(|t| t.unwrap_or(i64::MIN))
            .collect();
        let keys = self.partition.rows(&ready)?;
        let args: Vec<Vec<ArrayRef>> = self
            .calls
            .iter()
            .map(|c| evaluate_all(&c.function.expressions(), &ready))
            .collect::<Result<_, _>>()?;
        // Per key in time order, arrival order among equal times.
        let mut order: Vec<usize> = (0..ready.num_rows()).collect();
        order.sort_by(|&a, &b| keys.row(a).cmp(&keys.row(b)).then(times[a].cmp(&times[b])));
        let mut values: Vec<Vec<ScalarValue>> = self.calls.iter().map(|_| Vec::new()).collect();
        let frame = self.frame;
        let mut i = 0;
        while i < order.len() {
            // The rows of one key (contiguous: sorted by key), its partition looked up once.
            let first = order[i];
            let key_end = i + order[i..].partition_point(|&r| keys.row(r) == keys.row(first));
            let key = keys.row(first).owned();
            if !self.partitions.contains_key(&key) {
                let fresh = Partition {
                    accumulators: self.new_accumulators()?,
                    rows: VecDeque::new(),
                };
                self.partitions.insert(key.clone(), fresh);
            }
            let partition = self.partitions.get_mut(&key).expect("inserted above");
            while i < key_end {
                // A run: one row, or for peer frames the rows of one time.
                let mut end = i + 1;
                if frame.peers() {
                    while end < key_end && times[order[end]] == times[order[i]] {
                        end += 1;
                    }
                }
                let run: Vec<(i64, Vec<Vec<ArrayRef>>)> = order[i..end]
                    .iter()
                    .map(|&r| {
                        let row_args = args
                            .iter()
                            .map(|call| call.iter().map(|a| a.slice(r, 1)).collect())
                            .collect();
                        (times[r], row_args)
                    })
                    .collect();
                partition.add(frame, run)?;
                for (call, acc) in values.iter_mut().zip(&mut partition.accumulators) {
                    let v = acc.evaluate()?;
                    call.extend(std::iter::repeat_n(v, end - i));
                }
                i = end;
            }
        }
        let indices = UInt32Array::from_iter_values(order.iter().map(|&r| r as u32));
        let mut columns: Vec<ArrayRef> = ready
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        for (call, field) in values
            .into_iter()
            .zip(self.schema.fields().iter().skip(ready.num_columns()))
        {
            let array = ScalarValue::iter_to_array(call)?;
            columns.push(if array.data_type() == field.data_type() {
                array
            } else {
                arrow::compute::cast(&array, field.data_type())?
            });
        }
        out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    /// A RANGE frame that every row of a key has left holds nothing the next row needs: that
    /// row comes after the watermark, so its frame starts after `watermark + 1 - ms`.
    fn forget_passed_keys(&mut self) {
        if let Frame::Range(ms) = self.frame {
            let horizon = self.watermark.saturating_add(1).saturating_sub(ms);
            self.partitions
                .retain(|_, p| p.rows.back().is_some_and(|(t, _)| *t >= horizon));
        }
    }
}

impl Partition {
    /// Adds a run of rows (one row, or peers of one time) to the frame: rows that leave it are
    /// retracted first, then the run is added.
    fn add(&mut self, frame: Frame, run: Vec<(i64, Vec<Vec<ArrayRef>>)>) -> Result<(), JobError> {
        let time = run[0].0;
        let incoming = run.len();
        while let Some((t, _)) = self.rows.front() {
            let leaves = match frame {
                Frame::Rows(n) => self.rows.len() + incoming > n as usize + 1,
                Frame::Range(ms) => *t < time.saturating_sub(ms),
                _ => false,
            };
            if !leaves {
                break;
            }
            let (_, old) = self.rows.pop_front().expect("a front row");
            for (acc, args) in self.accumulators.iter_mut().zip(&old) {
                acc.retract_batch(args)?;
            }
        }
        for (t, args) in run {
            for (acc, a) in self.accumulators.iter_mut().zip(&args) {
                acc.update_batch(a)?;
            }
            if frame.bounded() {
                self.rows.push_back((t, args));
            }
        }
        Ok(())
    }
}

impl Operator for OverAggregate {
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        Some(self.partition.input_columns())
    }

    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        (column < self.input.fields().len()).then_some(column)
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(OverAggregate {
            partition: self.partition.clone(),
            time_column: self.time_column,
            frame: self.frame,
            calls: self.calls.clone(),
            input: self.input.clone(),
            schema: self.schema.clone(),
            pending: HeldRows::new(self.time_column),
            partitions: HashMap::new(),
            watermark: i64::MIN,
            late_rows: 0,
        }))
    }

    fn describe(&self) -> String {
        let calls: Vec<&str> = self.calls.iter().map(|c| c.label.as_str()).collect();
        let keys: Vec<String> = self
            .partition
            .exprs()
            .iter()
            .map(|e| {
                // A column shows as `name@index`: the name is what the user wrote.
                let shown = e.to_string();
                match shown.split_once('@') {
                    Some((name, index)) if index.bytes().all(|b| b.is_ascii_digit()) => {
                        name.to_string()
                    }
                    _ => shown,
                }
            })
            .collect();
        format!(
            "OVER (PARTITION BY {} ORDER BY {} {}): {}",
            keys.join(", "),
            self.input.field(self.time_column).name(),
            self.frame.describe(),
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
        self.late_rows += self.pending.hold(batch, self.watermark)?;
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
        self.emit(out)?;
        self.forget_passed_keys();
        Ok(())
    }

    fn late_rows(&self) -> u64 {
        self.late_rows
    }

    fn buffered_rows(&self) -> u64 {
        let pending = self.pending.rows();
        let framed: usize = self.partitions.values().map(|p| p.rows.len()).sum();
        (pending + framed) as u64
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("over-aggregate")
    }

    /// Three parts: the held rows; per key the frame's rows (key, time, arguments) of a bounded
    /// frame or the accumulators' states of an unbounded one.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let clock = snapshot::clock(self.watermark, self.late_rows);
        let mut metadata = clock.clone();
        metadata.extend(snapshot::keyed_rows(0, &self.input));
        let pending = snapshot::encode(&self.input, metadata, &self.pending.batches)?;
        let (schema, batch) = self.keyed_state()?;
        let mut metadata = clock;
        metadata.extend(snapshot::keyed_by_keys(0, self.partition.exprs()));
        let keyed = snapshot::encode(&schema, metadata, &[batch])?;
        Ok(Some(snapshot::join_parts(&[pending, keyed])))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        let parts = snapshot::split_parts(bytes)?;
        let [pending, keyed] = parts.as_slice() else {
            return Err(JobError::internal(
                "an OVER aggregate's snapshot has two parts",
            ));
        };
        let (metadata, pending) = snapshot::decode(pending)?;
        (self.watermark, self.late_rows) = snapshot::read_clock(&metadata)?;
        self.pending.batches = pending.into_iter().filter(|b| b.num_rows() > 0).collect();
        self.partitions.clear();
        let (_, keyed) = snapshot::decode(keyed)?;
        for batch in keyed {
            self.restore_keyed(&batch)?;
        }
        Ok(())
    }
}

impl OverAggregate {
    /// Columns of the keyed state: the key's columns, then (bounded) `__time` and each call's
    /// arguments, one row per frame row; or (unbounded) each call's state, one row per key.
    fn keyed_state(&mut self) -> Result<(SchemaRef, RecordBatch), JobError> {
        let mut keys = Vec::new();
        let mut times = Vec::new();
        let mut columns: Vec<Vec<ArrayRef>> = Vec::new();
        for (key, p) in self.partitions.iter_mut() {
            if self.frame.bounded() {
                for (t, args) in &p.rows {
                    keys.push(key.row());
                    times.push(*t);
                    columns.push(args.iter().flatten().cloned().collect());
                }
            } else {
                keys.push(key.row());
                let mut state = Vec::new();
                for acc in p.accumulators.iter_mut() {
                    for v in acc.state()? {
                        state.push(v.to_array()?);
                    }
                }
                columns.push(state);
            }
        }
        let mut fields: Vec<Field> = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (i, array) in self.partition.columns(keys)?.into_iter().enumerate() {
            fields.push(Field::new(format!("k{i}"), array.data_type().clone(), true));
            arrays.push(array);
        }
        if self.frame.bounded() {
            fields.push(Field::new("__time", DataType::Int64, false));
            arrays.push(Arc::new(arrow::array::Int64Array::from(times)));
        }
        let types = self.value_types()?;
        for (j, ty) in types.into_iter().enumerate() {
            let values: Vec<&dyn Array> = columns.iter().map(|c| c[j].as_ref()).collect();
            let array = if values.is_empty() {
                arrow::array::new_empty_array(&ty)
            } else {
                arrow::compute::concat(&values)?
            };
            fields.push(Field::new(format!("v{j}"), ty, true));
            arrays.push(array);
        }
        let schema = Arc::new(Schema::new(fields));
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(columns.len()));
        let batch = RecordBatch::try_new_with_options(schema.clone(), arrays, &options)?;
        Ok((schema, batch))
    }

    /// The types of the per-row values kept: every call's argument types (bounded) or state
    /// types (unbounded).
    fn value_types(&self) -> Result<Vec<DataType>, JobError> {
        let mut types = Vec::new();
        for c in &self.calls {
            if self.frame.bounded() {
                for e in c.function.expressions() {
                    types.push(e.data_type(&self.input)?);
                }
            } else {
                for f in c.function.state_fields()? {
                    types.push(f.data_type().clone());
                }
            }
        }
        Ok(types)
    }

    fn restore_keyed(&mut self, batch: &RecordBatch) -> Result<(), JobError> {
        let nkeys = self.partition.len();
        let keys = self
            .partition
            .rows_of(&batch.columns()[..nkeys], batch.num_rows())?;
        let counts: Vec<usize> = self
            .calls
            .iter()
            .map(|c| {
                Ok(if self.frame.bounded() {
                    c.function.expressions().len()
                } else {
                    c.function.state_fields()?.len()
                })
            })
            .collect::<Result<_, JobError>>()?;
        let values_at = nkeys + usize::from(self.frame.bounded());
        for r in 0..batch.num_rows() {
            let key = keys.row(r).owned();
            if !self.partitions.contains_key(&key) {
                let fresh = Partition {
                    accumulators: self.new_accumulators()?,
                    rows: VecDeque::new(),
                };
                self.partitions.insert(key.clone(), fresh);
            }
            let p = self.partitions.get_mut(&key).expect("inserted above");
            let mut at = values_at;
            let mut per_call = Vec::new();
            for n in &counts {
                per_call.push(
                    batch.columns()[at..at + n]
                        .iter()
                        .map(|c| c.slice(r, 1))
                        .collect::<Vec<_>>(),
                );
                at += n;
            }
            if self.frame.bounded() {
                let t = batch.column(nkeys).as_primitive::<Int64Type>().value(r);
                for (acc, args) in p.accumulators.iter_mut().zip(&per_call) {
                    acc.update_batch(args)?;
                }
                p.rows.push_back((t, per_call));
            } else {
                for (acc, state) in p.accumulators.iter_mut().zip(&per_call) {
                    acc.merge_batch(state)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::min_max::max_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;

    use super::*;
    use crate::operators::testing::{Harness, call, col, lines, schema};

    /// `SELECT k, ts, v, SUM(v) OVER w, MAX(v) OVER w, COUNT(v) OVER w FROM t
    ///  WINDOW w AS (PARTITION BY k ORDER BY ts <frame>)`
    fn over(frame: Frame) -> Harness<OverAggregate> {
        let input = schema("k:str ts:ts v:i64");
        let output = schema("k:str ts:ts v:i64 s:i64 m:i64 c:i64");
        let v = || vec![col("v", &input)];
        let op = OverAggregate::new(
            vec![col("k", &input)],
            &input,
            1,
            frame,
            vec![
                call(sum_udaf(), v(), &input, "s"),
                call(max_udaf(), v(), &input, "m"),
                call(count_udaf(), v(), &input, "c"),
            ],
            output,
        )
        .expect("an OVER aggregate");
        Harness::new(op)
    }

    #[test]
    fn rows_frames_take_the_row_and_n_before_it_in_event_time_order() {
        let mut h = over(Frame::Rows(1));
        // Out of order within a key until the watermark passes them.
        h.push(
            "k:str ts:ts     v:i64
             a     00:00:03  30
             a     00:00:01  10
             b     00:00:02  5
             a     00:00:02  20",
        );
        assert!(h.watermark("00:00:00").take().is_empty());
        assert_eq!(
            h.watermark("00:00:02").take_sorted(),
            lines(
                "a 00:00:01 10 10 10 1
                 a 00:00:02 20 30 20 2
                 b 00:00:02 5 5 5 1"
            )
        );
        // The frame slides: 10 leaves (retracted), so MAX falls back too.
        h.push(
            "k:str ts:ts     v:i64
             a     00:00:04  1",
        );
        assert_eq!(
            h.watermark("00:00:09").take(),
            lines(
                "a 00:00:03 30 50 30 2
                 a 00:00:04 1 31 30 2"
            )
        );
        // At or behind the watermark: late, dropped and counted.
        h.push(
            "k:str ts:ts     v:i64
             a     00:00:09  1
             a     00:00:10  2",
        );
        assert_eq!(h.op.late_rows(), 1);
        assert_eq!(h.watermark("00:00:10").take(), lines("a 00:00:10 2 3 2 2"));
    }

    #[test]
    fn range_frames_share_aggregates_among_peers_and_forget_passed_keys() {
        let mut h = over(Frame::Range(2_000));
        h.push(
            "k:str ts:ts     v:i64
             a     00:00:01  1
             a     00:00:02  2
             a     00:00:02  3
             a     00:00:05  4",
        );
        // Rows of 00:00:02 are peers: both see each other. At 00:00:05 the frame is [3 s, 5 s].
        assert_eq!(
            h.watermark("00:00:05").take(),
            lines(
                "a 00:00:01 1 1 1 1
                 a 00:00:02 2 6 3 3
                 a 00:00:02 3 6 3 3
                 a 00:00:05 4 4 4 1"
            )
        );
        assert_eq!(h.op.buffered_rows(), 1);
        // Once the watermark is 2 s past a key's last row, nothing of it is kept.
        h.watermark("00:00:07");
        assert_eq!(h.op.buffered_rows(), 0);
    }

    #[test]
    fn unbounded_frames_run_from_the_first_row() {
        let mut h = over(Frame::UnboundedRows);
        h.push(
            "k:str ts:ts     v:i64
             a     00:00:01  1
             a     00:00:01  2
             a     00:00:03  4",
        );
        assert_eq!(
            h.watermark("00:00:05").take(),
            lines(
                "a 00:00:01 1 1 1 1
                 a 00:00:01 2 3 2 2
                 a 00:00:03 4 7 4 3"
            )
        );
    }

    /// A snapshot holds the rows waiting and every key's frame: a restored operator goes on
    /// exactly as the original.
    #[test]
    fn a_restored_operator_goes_on_as_the_original() {
        for frame in [Frame::Rows(2), Frame::Range(3_000), Frame::UnboundedRange] {
            let mut original = over(frame);
            original
                .push(
                    "k:str ts:ts     v:i64
                     a     00:00:01  1
                     b     00:00:01  7
                     a     00:00:02  2
                     a     00:00:06  3",
                )
                .watermark("00:00:02");
            original.take();
            let bytes = original.op.snapshot().unwrap().unwrap();
            let mut restored = over(frame);
            restored.op.restore(&bytes).unwrap();
            let next = "k:str ts:ts     v:i64
                        a     00:00:04  4
                        b     00:00:05  5";
            original.push(next).watermark("00:00:09");
            restored.push(next).watermark("00:00:09");
            let (a, b) = (original.take(), restored.take());
            assert_eq!(a.len(), 3, "{frame:?}: {a:?}");
            assert_eq!(a, b, "{frame:?}");
            assert_eq!(original.op.late_rows(), restored.op.late_rows());
        }
    }
}
