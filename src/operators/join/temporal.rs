//! Event-time temporal join, as Flink's `JOIN versioned FOR SYSTEM_TIME AS OF o.ts`: each row
//! of the probe side (left) joins the version of the versioned side's key that was current at
//! the row's time — the latest version at or before it. The versioned side's rows are versions
//! of their key (an updating input's `-D` ends its key, `-U` is ignored). A probe row waits until
//! the watermark passes its time (no version of its past can still come), then leaves joined —
//! or, in a LEFT join, padded with NULLs when its key had no version then. Per key the operator
//! keeps the versions the watermark has not made obsolete: the latest at or before it, and
//! those after. Probe rows at or behind the watermark when they arrive are late, dropped and
//! counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::interval::JoinSide;
use super::padded::{joined, null_columns};
use crate::operators::evaluate::{evaluate_all, evaluate_predicate, key_converter};
use crate::operators::event_time::{HeldRows, event_times};
use crate::operators::snapshot;
use crate::stream::changelog::{RowKind, row_kinds, without_kinds};
use crate::stream::{JobError, Operator};

pub struct TemporalJoin {
    left: JoinSide,
    right: JoinSide,
    /// How many of the versioned side's columns the output has (its time may follow them).
    visible: usize,
    /// Keep probe rows without a version (LEFT JOIN).
    keep_unmatched: bool,
    converter: RowConverter,
    residual: Option<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    /// Probe rows waiting for the watermark.
    pending: HeldRows,
    /// Per key, its versions by time: a one-row batch of the versioned side, or `None` when
    /// the key was deleted then.
    versions: HashMap<Vec<u8>, BTreeMap<i64, Option<RecordBatch>>>,
    watermark: i64,
    late_rows: u64,
}

impl TemporalJoin {
    pub fn new(
        left: JoinSide,
        right: JoinSide,
        visible: usize,
        keep_unmatched: bool,
        residual: Option<Arc<dyn PhysicalExpr>>,
        output: SchemaRef,
    ) -> Result<Self, JobError> {
        let converter = key_converter(&left.keys, &left.schema)?;
        let pending = HeldRows::new(left.time_column);
        Ok(TemporalJoin {
            left,
            right,
            visible,
            keep_unmatched,
            converter,
            residual,
            schema: output,
            pending,
            versions: HashMap::new(),
            watermark: i64::MIN,
            late_rows: 0,
        })
    }

    /// The versioned side's columns, without a row kind.
    fn right_columns(&self) -> SchemaRef {
        let fields = self.right.schema.fields();
        let n = if crate::stream::changelog::is_changelog(&self.right.schema) {
            fields.len() - 1
        } else {
            fields.len()
        };
        Arc::new(Schema::new(fields[..n].to_vec()))
    }

    fn add_versions(&mut self, batch: &RecordBatch) -> Result<(), JobError> {
        let kinds = row_kinds(batch);
        let rows = without_kinds(batch);
        let times = event_times(rows.column(self.right.time_column))?;
        let key_columns = evaluate_all(&self.right.keys, &rows)?;
        let keys = self.converter.convert_columns(&key_columns)?;
        for (i, (kind, t)) in kinds.iter().zip(&times).enumerate() {
            let Some(t) = *t else { continue };
            if *kind == RowKind::UpdateBefore || key_columns.iter().any(|c| c.is_null(i)) {
                continue;
            }
            let version = (*kind != RowKind::Delete).then(|| rows.slice(i, 1));
            self.versions
                .entry(keys.row(i).as_ref().to_vec())
                .or_default()
                .insert(t, version);
        }
        Ok(())
    }

    /// Joins the probe rows the watermark has passed with the versions current at their times.
    fn emit(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), JobError> {
        let Some(rows) = self.pending.take_due(&self.left.schema, self.watermark)? else {
            return Ok(());
        };
        let times = event_times(rows.column(self.left.time_column))?;
        let key_columns = evaluate_all(&self.left.keys, &rows)?;
        let keys = self.converter.convert_columns(&key_columns)?;
        // Each probe row's version: (probe row, the version's one-row batch).
        let mut probe = Vec::new();
        let mut found: Vec<RecordBatch> = Vec::new();
        let mut alone = Vec::new();
        for (i, t) in times.iter().enumerate() {
            let version = t.and_then(|t| {
                let versions = self.versions.get(keys.row(i).as_ref())?;
                versions.range(..=t).next_back()?.1.clone()
            });
            match version {
                Some(v) => {
                    probe.push(i as u32);
                    found.push(v);
                }
                None => alone.push(i as u32),
            }
        }
        let right_schema = self.right_columns();
        let shown = Arc::new(Schema::new(right_schema.fields()[..self.visible].to_vec()));
        // The probe side may carry its time column last for the join alone: not shown.
        let probe_shown = self.schema.fields().len() - self.visible;
        if !probe.is_empty() {
            let mut left = take_rows(&rows, &probe)?;
            left.truncate(probe_shown);
            let versions = concat_batches(&right_schema, &found)?;
            let versions = versions.columns()[..self.visible].to_vec();
            let pairs = joined(&self.schema, left, versions)?;
            let pass = match &self.residual {
                Some(r) => evaluate_predicate(r, &pairs)?,
                None => BooleanArray::from(vec![true; pairs.num_rows()]),
            };
            for (p, i) in probe.iter().enumerate() {
                if !(pass.is_valid(p) && pass.value(p)) {
                    alone.push(*i);
                }
            }
            out.push(filter_record_batch(&pairs, &pass)?);
        }
        if self.keep_unmatched && !alone.is_empty() {
            alone.sort_unstable();
            let mut left = take_rows(&rows, &alone)?;
            left.truncate(probe_shown);
            let nulls = null_columns(&shown, alone.len());
            out.push(joined(&self.schema, left, nulls)?);
        }
        out.retain(|b| b.num_rows() > 0);
        Ok(())
    }

    /// Versions no future probe row can need: all but the latest at or before the watermark.
    fn forget_obsolete(&mut self) {
        let watermark = self.watermark;
        self.versions.retain(|_, versions| {
            if let Some((&current, _)) = versions.range(..=watermark).next_back() {
                *versions = versions.split_off(&current);
            }
            // A deleted key with nothing after it is gone.
            !(versions.len() == 1 && versions.values().next().is_some_and(Option::is_none))
        });
    }
}

fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<Vec<ArrayRef>, JobError> {
    let indices = UInt32Array::from(rows.to_vec());
    Ok(batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<Result<_, _>>()?)
}

impl Operator for TemporalJoin {
    fn state_key(&self, input: usize) -> Option<Vec<usize>> {
        Some(super::paired_key_columns(
            &self.left.keys,
            &self.right.keys,
            input,
        ))
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        let op = TemporalJoin::new(
            self.left.clone(),
            self.right.clone(),
            self.visible,
            self.keep_unmatched,
            self.residual.clone(),
            self.schema.clone(),
        );
        Some(Box::new(op.ok()?))
    }

    fn describe(&self) -> String {
        format!(
            "temporal join{} on {} key(s): each row with the version of its time",
            if self.keep_unmatched { " (LEFT)" } else { "" },
            self.left.keys.len()
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process_batch(
        &mut self,
        _batch: RecordBatch,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        Err(JobError::internal("a temporal join takes its rows by side"))
    }

    fn process_input(
        &mut self,
        side: usize,
        batch: RecordBatch,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        if side == 1 {
            return self.add_versions(&batch);
        }
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
        self.forget_obsolete();
        Ok(())
    }

    fn late_rows(&self) -> u64 {
        self.late_rows
    }

    fn buffered_rows(&self) -> u64 {
        let pending = self.pending.rows();
        let versions: usize = self.versions.values().map(BTreeMap::len).sum();
        (pending + versions) as u64
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("temporal-join")
    }

    /// Two parts: the waiting probe rows; the versions (the versioned side's columns, a
    /// `__time` and a `__deleted` flag).
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let mut metadata = snapshot::clock(self.watermark, self.late_rows);
        metadata.extend(snapshot::keyed_rows(0, &self.left.schema));
        let pending = snapshot::encode(&self.left.schema, metadata, &self.pending.batches)?;
        let right = self.right_columns();
        let mut rows: Vec<RecordBatch> = Vec::new();
        let mut times = Vec::new();
        let mut deleted = Vec::new();
        for versions in self.versions.values() {
            for (t, v) in versions {
                times.push(*t);
                deleted.push(v.is_none());
                rows.push(v.clone().unwrap_or_else(|| {
                    RecordBatch::try_new(right.clone(), null_columns(&right, 1))
                        .unwrap_or_else(|_| RecordBatch::new_empty(right.clone()))
                }));
            }
        }
        let nullable: Vec<Field> = right
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let loose = Arc::new(Schema::new(nullable.clone()));
        let rows: Vec<RecordBatch> = rows
            .into_iter()
            .map(|r| RecordBatch::try_new(loose.clone(), r.columns().to_vec()))
            .collect::<Result<_, _>>()?;
        let rows = concat_batches(&loose, &rows)?;
        let mut fields = nullable;
        fields.push(Field::new("__time", DataType::Int64, false));
        fields.push(Field::new("__deleted", DataType::Boolean, false));
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(arrow::array::Int64Array::from(times)));
        columns.push(Arc::new(BooleanArray::from(deleted)));
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let keyed = snapshot::keyed_rows(1, &right).into_iter().collect();
        let versions = snapshot::encode(&schema, keyed, &[batch])?;
        Ok(Some(snapshot::join_parts(&[pending, versions])))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        let parts = snapshot::split_parts(bytes)?;
        let [pending, versions] = parts.as_slice() else {
            return Err(JobError::internal(
                "a temporal join's snapshot has two parts",
            ));
        };
        let (metadata, pending) = snapshot::decode(pending)?;
        (self.watermark, self.late_rows) = snapshot::read_clock(&metadata)?;
        self.pending.batches = pending.into_iter().filter(|b| b.num_rows() > 0).collect();
        self.versions.clear();
        let right = self.right_columns();
        for b in snapshot::decode(versions)?.1 {
            let n = right.fields().len();
            let rows = RecordBatch::try_new(right.clone(), b.columns()[..n].to_vec())?;
            let times = b.column(n).as_primitive::<Int64Type>().clone();
            let deleted = b.column(n + 1).as_boolean().clone();
            let keys = self
                .converter
                .convert_columns(&evaluate_all(&self.right.keys, &rows)?)?;
            for i in 0..rows.num_rows() {
                let version = (!deleted.value(i)).then(|| rows.slice(i, 1));
                self.versions
                    .entry(keys.row(i).as_ref().to_vec())
                    .or_default()
                    .insert(times.value(i), version);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::{Harness, col, lines, schema};

    /// `orders o [LEFT] JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.cur = r.cur`
    fn rates(keep_unmatched: bool) -> Harness<TemporalJoin> {
        let orders = schema("cur:str ts:ts n:i64");
        let rates = schema("cur:str ts:ts rate:f64");
        let output = schema("cur:str ts:ts n:i64 rcur:str rts:ts rate:f64");
        let side = |s: &SchemaRef| JoinSide {
            keys: vec![col("cur", s)],
            time_column: 1,
            schema: s.clone(),
        };
        Harness::new(
            TemporalJoin::new(side(&orders), side(&rates), 3, keep_unmatched, None, output)
                .unwrap(),
        )
    }

    #[test]
    fn each_row_joins_the_version_of_its_time() {
        let mut h = rates(true);
        h.push_to(
            1,
            "cur:str ts:ts     rate:f64
             eur     00:00:01  1.1
             eur     00:00:10  1.2",
        );
        h.push_to(
            0,
            "cur:str ts:ts     n:i64
             eur     00:00:05  1
             eur     00:00:10  2
             usd     00:00:06  3
             eur     00:00:00  4",
        );
        // A row leaves once the watermark passes it; before eur's first version, none.
        assert_eq!(
            h.watermark("00:00:04").take(),
            lines("eur 00:00:00 4 null null null")
        );
        assert_eq!(
            h.watermark("00:00:10").take_sorted(),
            lines(
                "eur 00:00:05 1 eur 00:00:01 1.1
                 eur 00:00:10 2 eur 00:00:10 1.2
                 usd 00:00:06 3 null null null"
            )
        );
        // Only the version current at the watermark (10 s) is kept for eur.
        assert_eq!(h.op.buffered_rows(), 1);
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = rates(true);
        restored.op.restore(&bytes).unwrap();
        for h in [&mut h, &mut restored] {
            h.push_to(0, "cur:str ts:ts n:i64\neur 00:00:20 5");
            assert_eq!(
                h.watermark("00:00:30").take(),
                lines("eur 00:00:20 5 eur 00:00:10 1.2")
            );
        }
    }
}
