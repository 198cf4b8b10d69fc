//! Deduplication keeping the first row per key in event time: `ROW_NUMBER() OVER (PARTITION BY
//! keys ORDER BY rowtime ASC) = 1`. Rows wait until the watermark passes them (an earlier row of
//! a key may still come until then); then each key not seen before emits its earliest row —
//! arrival order among equal times — and is remembered, so the output is append-only. Later rows
//! of a remembered key are dropped as they come; rows at or behind the watermark are late.
//! The remembered keys are the state: one entry per distinct key. Keep-last ([`KeepLast`]) is
//! below.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::{concat_batches, filter_record_batch, take};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::row::{OwnedRow, Row};
use datafusion::physical_expr::PhysicalExpr;

use crate::operators::evaluate::Keys;
use crate::operators::event_time::event_times;
use crate::operators::snapshot;
use crate::stream::changelog::{RowKind, kinds_column};
use crate::stream::{JobError, Operator};

pub struct KeepFirst {
    keys: Keys,
    time_column: usize,
    input: SchemaRef,
    /// The input's columns and the row number (always 1).
    schema: SchemaRef,
    pending: Vec<RecordBatch>,
    seen: HashSet<OwnedRow>,
    watermark: i64,
    late_rows: u64,
}

impl KeepFirst {
    pub fn new(
        keys: Vec<Arc<dyn PhysicalExpr>>,
        time_column: usize,
        input: SchemaRef,
        output: SchemaRef,
    ) -> Result<Self, JobError> {
        let keys = Keys::new(keys, &input)?;
        Ok(KeepFirst {
            keys,
            time_column,
            input,
            schema: output,
            pending: Vec::new(),
            seen: HashSet::new(),
            watermark: i64::MIN,
            late_rows: 0,
        })
    }

    fn emit(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), JobError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let all = concat_batches(&self.input, &self.pending)?;
        self.pending.clear();
        let times = event_times(all.column(self.time_column))?;
        let keys = self.keys.rows(&all)?;
        // Each unseen key's earliest ready row (the first to arrive among equal times).
        let mut first: HashMap<OwnedRow, (i64, usize)> = HashMap::new();
        let mut waiting = vec![false; all.num_rows()];
        for (i, t) in times.iter().enumerate() {
            let Some(t) = *t else { continue };
            if t > self.watermark {
                waiting[i] = true;
                continue;
            }
            let key = keys.row(i);
            if self.seen.contains(&key.owned()) {
                continue;
            }
            first
                .entry(key.owned())
                .and_modify(|best| {
                    if t < best.0 {
                        *best = (t, i);
                    }
                })
                .or_insert((t, i));
        }
        let waiting = filter_record_batch(&all, &BooleanArray::from(waiting))?;
        if waiting.num_rows() > 0 {
            self.pending.push(waiting);
        }
        if first.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<(i64, usize)> = Vec::with_capacity(first.len());
        for (key, best) in first {
            self.seen.insert(key);
            rows.push(best);
        }
        rows.sort_unstable();
        let indices = UInt32Array::from_iter_values(rows.iter().map(|&(_, i)| i as u32));
        let mut columns: Vec<ArrayRef> = all
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        columns.push(Arc::new(UInt64Array::from(vec![1; rows.len()])));
        out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }
}

impl Operator for KeepFirst {
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        Some(self.keys.input_columns())
    }

    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        (column < self.input.fields().len()).then_some(column)
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(KeepFirst {
            keys: self.keys.clone(),
            time_column: self.time_column,
            input: self.input.clone(),
            schema: self.schema.clone(),
            pending: Vec::new(),
            seen: HashSet::new(),
            watermark: i64::MIN,
            late_rows: 0,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "deduplicate: first row per {} key(s) in event time",
            self.keys.len()
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
        let times = event_times(batch.column(self.time_column))?;
        let keys = self.keys.rows(&batch)?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for (i, t) in times.iter().enumerate() {
            let late = t.is_none_or(|t| t <= self.watermark);
            if late {
                self.late_rows += 1;
            }
            keep.push(!late && !self.seen.contains(&keys.row(i).owned()));
        }
        let batch = filter_record_batch(&batch, &BooleanArray::from(keep))?;
        if batch.num_rows() > 0 {
            self.pending.push(batch);
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
        self.emit(out)
    }

    fn late_rows(&self) -> u64 {
        self.late_rows
    }

    fn buffered_rows(&self) -> u64 {
        self.pending.iter().map(|b| b.num_rows() as u64).sum()
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("deduplicate")
    }

    /// Two parts: the rows waiting, and the keys seen (as the key columns).
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let mut metadata = snapshot::clock(self.watermark, self.late_rows);
        metadata.extend(snapshot::keyed_rows(0, &self.input));
        let pending = snapshot::encode(&self.input, metadata, &self.pending)?;
        let columns = self.keys.columns(self.seen.iter().map(|k| k.row()))?;
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("k{i}"), c.data_type().clone(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(self.seen.len()));
        let seen = RecordBatch::try_new_with_options(schema.clone(), columns, &options)?;
        let keyed = snapshot::keyed_by_keys(0, self.keys.exprs())
            .into_iter()
            .collect();
        let seen = snapshot::encode(&schema, keyed, &[seen])?;
        Ok(Some(snapshot::join_parts(&[pending, seen])))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        let parts = snapshot::split_parts(bytes)?;
        let [pending, seen] = parts.as_slice() else {
            return Err(JobError::internal(
                "a deduplication's snapshot has two parts",
            ));
        };
        let (metadata, pending) = snapshot::decode(pending)?;
        (self.watermark, self.late_rows) = snapshot::read_clock(&metadata)?;
        self.pending = pending.into_iter().filter(|b| b.num_rows() > 0).collect();
        self.seen.clear();
        for b in snapshot::decode(seen)?.1 {
            let rows = self.keys.rows_of(b.columns(), b.num_rows())?;
            self.seen.extend(rows.iter().map(|r| r.owned()));
        }
        Ok(())
    }
}

/// Deduplication keeping the last row per key in event time: `ROW_NUMBER() OVER (PARTITION BY
/// keys ORDER BY rowtime DESC) = 1`, as Flink's: a row at least as recent as its key's current
/// one replaces it at once — `+I` the first time, then `-U` the old row and `+U` the new — so
/// the output is a changelog. Within a batch a key changes once (to its last row). The state is
/// one row per key.
pub struct KeepLast {
    keys: Keys,
    time_column: usize,
    input: SchemaRef,
    /// The input's columns, the row number (always 1) and the row kind.
    schema: SchemaRef,
    /// Each key's current row (a one-row batch) and its time.
    current: HashMap<OwnedRow, (i64, RecordBatch)>,
}

impl KeepLast {
    pub fn new(
        keys: Vec<Arc<dyn PhysicalExpr>>,
        time_column: usize,
        input: SchemaRef,
        output: SchemaRef,
    ) -> Result<Self, JobError> {
        let keys = Keys::new(keys, &input)?;
        Ok(KeepLast {
            keys,
            time_column,
            input,
            schema: output,
            current: HashMap::new(),
        })
    }
}

impl Operator for KeepLast {
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        Some(self.keys.input_columns())
    }

    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        (column < self.input.fields().len()).then_some(column)
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(KeepLast {
            keys: self.keys.clone(),
            time_column: self.time_column,
            input: self.input.clone(),
            schema: self.schema.clone(),
            current: HashMap::new(),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "deduplicate: last row per {} key(s) in event time (updating)",
            self.keys.len()
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let times = event_times(batch.column(self.time_column))?;
        let keys = self.keys.rows(&batch)?;
        // Each key's last row of the batch at least as recent as what it had.
        // Keyed by the batch's rows (borrowed): the state is looked up once per key.
        let mut latest: HashMap<Row<'_>, (i64, usize)> = HashMap::new();
        let mut order = Vec::new();
        for (i, t) in times.iter().enumerate() {
            let Some(t) = *t else { continue };
            let key = keys.row(i);
            let floor = match latest.get(&key) {
                Some((t, _)) => Some(*t),
                None => self.current.get(&key.owned()).map(|(t, _)| *t),
            };
            if floor.is_none_or(|f| t >= f) && latest.insert(key, (t, i)).is_none() {
                order.push(key);
            }
        }
        let mut rows: Vec<RecordBatch> = Vec::new();
        let mut kinds = Vec::new();
        for key in order {
            let (t, i) = latest[&key];
            let row = batch.slice(i, 1);
            match self.current.insert(key.owned(), (t, row.clone())) {
                Some((_, old)) => {
                    rows.push(old);
                    kinds.push(RowKind::UpdateBefore);
                    kinds.push(RowKind::UpdateAfter);
                }
                None => kinds.push(RowKind::Insert),
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Ok(());
        }
        let rows = concat_batches(&self.input, &rows)?;
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from(vec![1; rows.num_rows()])));
        columns.push(kinds_column(kinds));
        out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    fn buffered_rows(&self) -> u64 {
        self.current.len() as u64
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("deduplicate-last")
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let rows: Vec<RecordBatch> = self.current.values().map(|(_, r)| r.clone()).collect();
        let rows = concat_batches(&self.input, &rows)?;
        let metadata = snapshot::keyed_rows(0, &self.input).into_iter().collect();
        Ok(Some(snapshot::encode(&self.input, metadata, &[rows])?))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        self.current.clear();
        for b in snapshot::decode(bytes)?.1 {
            let b = RecordBatch::try_new(self.input.clone(), b.columns().to_vec())?;
            let times = event_times(b.column(self.time_column))?;
            let keys = self.keys.rows(&b)?;
            for (i, t) in times.iter().enumerate() {
                if let Some(t) = t {
                    self.current
                        .insert(keys.row(i).owned(), (*t, b.slice(i, 1)));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::{Harness, col, lines, schema};

    fn keep_first() -> Harness<KeepFirst> {
        let input = schema("k:str ts:ts v:i64");
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("rn", arrow::datatypes::DataType::UInt64, false));
        let op = KeepFirst::new(
            vec![col("k", &input)],
            1,
            input,
            Arc::new(Schema::new(fields)),
        )
        .expect("a deduplication");
        Harness::new(op)
    }

    #[test]
    fn each_key_emits_its_earliest_row_once() {
        let mut h = keep_first();
        h.push(
            "k:str ts:ts     v:i64
             a     00:00:05  1
             a     00:00:03  2
             b     00:00:09  3",
        );
        assert_eq!(h.watermark("00:00:06").take(), lines("a 00:00:03 2 1"));
        // a is done; b's row waits for the watermark.
        h.push(
            "k:str ts:ts     v:i64
             a     00:00:07  4
             b     00:00:08  5",
        );
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = keep_first();
        restored.op.restore(&bytes).unwrap();
        for h in [&mut h, &mut restored] {
            assert_eq!(h.watermark("00:00:20").take(), lines("b 00:00:08 5 1"));
            h.push(
                "k:str ts:ts     v:i64
                 c     00:00:01  6",
            );
            assert_eq!(h.op.late_rows(), 1);
        }
    }

    #[test]
    fn keep_last_replaces_a_keys_row_with_a_more_recent_one() {
        let input = schema("k:str ts:ts v:i64");
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("rn", arrow::datatypes::DataType::UInt64, false));
        let output = crate::stream::changelog::with_kinds(&Schema::new(fields));
        let new = || KeepLast::new(vec![col("k", &input)], 1, input.clone(), output.clone());
        let mut h = Harness::new(new().unwrap());
        h.push(
            "k:str ts:ts     v:i64
             a     00:00:05  1
             a     00:00:03  2
             b     00:00:01  3
             a     00:00:05  4",
        );
        // Equal times: the later row wins. One change per key per batch.
        assert_eq!(h.take(), lines("a 00:00:05 4 1 0\nb 00:00:01 3 1 0"));
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = Harness::new(new().unwrap());
        restored.op.restore(&bytes).unwrap();
        for h in [&mut h, &mut restored] {
            h.push(
                "k:str ts:ts     v:i64
                 a     00:00:04  5
                 b     00:00:02  6",
            );
            // a's older row changes nothing; b's newer one replaces (-U 1, +U 2).
            assert_eq!(h.take(), lines("b 00:00:01 3 1 1\nb 00:00:02 6 1 2"));
        }
    }
}
