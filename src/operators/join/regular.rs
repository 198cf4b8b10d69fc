//! Regular join of two streams (an equi-join without time bounds), as Flink's: every row is
//! kept — for ever, or until `table.exec.state.ttl` after it arrived — and a pair leaves when its
//! second row arrives. INNER over append-only inputs emits only pairs (append-only). An outer
//! side's row without a partner leaves at once padded with NULLs (`+I`); when its first partner
//! arrives that row is taken back (`-D`) before the pair (`+I`): an outer regular join is a
//! changelog. Either input may itself be a changelog (an updating aggregate's result): a `-U` or
//! `-D` row takes its kept twin out and every pair it made back (`-D`), and an outer partner left
//! alone by it is shown padded again. `NULL` keys match nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::interval::JoinKind;
use super::padded::{joined, null_columns};
use crate::operators::evaluate::{evaluate_all, evaluate_predicate, key_converter};
use crate::stream::changelog::{RowKind, is_changelog, kinds_column, row_kinds, without_kinds};
use crate::stream::{JobError, Operator};

/// One input: its equality keys and its rows' schema (without a row kind).
#[derive(Clone)]
pub struct RegularSide {
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub schema: SchemaRef,
    /// Whether its batches carry row kinds (it is a changelog).
    pub changelog: bool,
}

struct Kept {
    row: RecordBatch,
    /// The whole row as bytes that compare, on a changelog side: what a retraction looks for.
    whole: Option<Vec<u8>>,
    /// Partners found so far (for padding and its retraction).
    partners: u64,
    arrived: Instant,
}

pub struct RegularJoin {
    kind: JoinKind,
    sides: [RegularSide; 2],
    converter: RowConverter,
    /// Per side, whole rows as comparable bytes (on a changelog side).
    wholes: [Option<RowConverter>; 2],
    residual: Option<Arc<dyn PhysicalExpr>>,
    /// The joined columns, and the row kind when outer or an input is a changelog.
    schema: SchemaRef,
    kept: [HashMap<Vec<u8>, Vec<Kept>>; 2],
    ttl: Option<Duration>,
    since_sweep: u32,
}

impl RegularJoin {
    pub fn new(
        kind: JoinKind,
        left: RegularSide,
        right: RegularSide,
        residual: Option<Arc<dyn PhysicalExpr>>,
        output: SchemaRef,
        ttl: Option<Duration>,
    ) -> Result<Self, JobError> {
        let converter = key_converter(&left.keys, &left.schema)?;
        let whole = |side: &RegularSide| -> Result<Option<RowConverter>, JobError> {
            if !side.changelog {
                return Ok(None);
            }
            let fields = side
                .schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            Ok(Some(RowConverter::new(fields)?))
        };
        Ok(RegularJoin {
            kind,
            wholes: [whole(&left)?, whole(&right)?],
            sides: [left, right],
            converter,
            residual,
            schema: output,
            kept: [HashMap::new(), HashMap::new()],
            ttl,
            since_sweep: 0,
        })
    }

    /// Whether the output carries row kinds.
    fn changelog(&self) -> bool {
        is_changelog(&self.schema)
    }

    /// The joined columns without the row kind.
    fn plain_schema(&self) -> SchemaRef {
        plain(&self.schema)
    }

    fn forget_expired(&mut self) {
        let Some(ttl) = self.ttl else { return };
        self.since_sweep += 1;
        if self.since_sweep < 64 {
            return;
        }
        self.since_sweep = 0;
        let now = Instant::now();
        for side in &mut self.kept {
            side.retain(|_, rows| {
                rows.retain(|k| now.duration_since(k.arrived) < ttl);
                !rows.is_empty()
            });
        }
    }
}

impl Operator for RegularJoin {
    fn state_key(&self, input: usize) -> Option<Vec<usize>> {
        let [l, r] = &self.sides;
        Some(super::paired_key_columns(&l.keys, &r.keys, input))
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        let [l, r] = &self.sides;
        let op = RegularJoin::new(
            self.kind,
            l.clone(),
            r.clone(),
            self.residual.clone(),
            self.schema.clone(),
            self.ttl,
        );
        Some(Box::new(op.ok()?))
    }

    fn describe(&self) -> String {
        format!(
            "regular join {:?} on {} key(s): every row kept{}",
            self.kind,
            self.sides[0].keys.len(),
            match self.ttl {
                Some(ttl) => format!(" for {ttl:?}"),
                None => " (no table.exec.state.ttl: for ever)".to_string(),
            }
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
        Err(JobError::internal("a join takes its rows by side"))
    }

    fn process_input(
        &mut self,
        side: usize,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let row_kinds = row_kinds(&batch);
        let batch = without_kinds(&batch);
        let key_columns = evaluate_all(&self.sides[side].keys, &batch)?;
        let keys = self.converter.convert_columns(&key_columns)?;
        let wholes = match &self.wholes[side] {
            Some(c) => Some(c.convert_columns(batch.columns())?),
            None => None,
        };
        let valid = |i: usize| key_columns.iter().all(|c| c.is_valid(i));
        // Every candidate pair of the batch — (row, index among the other side's rows of its
        // key) — joined in one batch, the rest of the ON condition evaluated once over it.
        let mut candidates: Vec<(usize, usize)> = Vec::new();
        let mut partners_rows: Vec<&RecordBatch> = Vec::new();
        for i in (0..batch.num_rows()).filter(|&i| valid(i)) {
            if let Some(others) = self.kept[1 - side].get(keys.row(i).as_ref()) {
                for (j, o) in others.iter().enumerate() {
                    candidates.push((i, j));
                    partners_rows.push(&o.row);
                }
            }
        }
        let plain = self.plain_schema();
        let pairs = if candidates.is_empty() {
            RecordBatch::new_empty(plain.clone())
        } else {
            let this_rows =
                UInt32Array::from_iter_values(candidates.iter().map(|(i, _)| *i as u32));
            let this: Vec<ArrayRef> = batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &this_rows, None))
                .collect::<Result<_, _>>()?;
            let that = concat_batches(&self.sides[1 - side].schema, partners_rows)?;
            let (l, r) = if side == 0 {
                (this, that.columns().to_vec())
            } else {
                (that.columns().to_vec(), this)
            };
            joined(&plain, l, r)?
        };
        let pass = match &self.residual {
            Some(r) if pairs.num_rows() > 0 => evaluate_predicate(r, &pairs)?,
            _ => BooleanArray::from(vec![true; pairs.num_rows()]),
        };
        // In row order: each passing pair (after taking back the other row shown padded, if it
        // was), or the row alone, padded, on an outer side; a retraction takes all that back.
        let mut rows: Vec<RecordBatch> = Vec::new();
        let mut kinds: Vec<RowKind> = Vec::new();
        let now = Instant::now();
        let changelog = self.changelog();
        let this_outer = self.kind.keeps_unmatched(side);
        let other_outer = self.kind.keeps_unmatched(1 - side);
        let mut next = 0;
        for (i, kind) in row_kinds.iter().enumerate() {
            let key = keys.row(i).as_ref().to_vec();
            let whole = wholes.as_ref().map(|w| w.row(i).as_ref().to_vec());
            let first = next;
            while next < candidates.len() && candidates[next].0 == i {
                next += 1;
            }
            let passing = (first..next).filter(|&p| pass.is_valid(p) && pass.value(p));
            if kind.is_retraction() {
                // Its twin kept earlier; a row never kept (forgotten by TTL) changes nothing.
                let Some(kept) = self.kept[side].get_mut(&key) else {
                    continue;
                };
                let Some(at) = kept.iter().position(|k| k.whole == whole) else {
                    continue;
                };
                let gone = kept.remove(at);
                if kept.is_empty() {
                    self.kept[side].remove(&key);
                }
                for p in passing {
                    let other = &mut self.kept[1 - side]
                        .get_mut(&key)
                        .expect("a candidate's key")[candidates[p].1];
                    rows.push(pairs.slice(p, 1));
                    kinds.push(RowKind::Delete);
                    other.partners = other.partners.saturating_sub(1);
                    if other_outer && other.partners == 0 {
                        let padded = joined_alone(&self.sides, 1 - side, &other.row, &self.schema)?;
                        rows.push(padded);
                        kinds.push(RowKind::Insert);
                    }
                }
                if this_outer && gone.partners == 0 {
                    rows.push(joined_alone(&self.sides, side, &gone.row, &self.schema)?);
                    kinds.push(RowKind::Delete);
                }
                continue;
            }
            let mut partners = 0;
            for p in passing {
                let other = &mut self.kept[1 - side]
                    .get_mut(&key)
                    .expect("a candidate's key")[candidates[p].1];
                if other_outer && other.partners == 0 {
                    let padded = joined_alone(&self.sides, 1 - side, &other.row, &self.schema)?;
                    rows.push(padded);
                    kinds.push(RowKind::Delete);
                }
                other.partners += 1;
                partners += 1;
                rows.push(pairs.slice(p, 1));
                kinds.push(RowKind::Insert);
            }
            let this = batch.slice(i, 1);
            if partners == 0 && this_outer {
                rows.push(joined_alone(&self.sides, side, &this, &self.schema)?);
                kinds.push(RowKind::Insert);
            }
            if valid(i) || this_outer {
                self.kept[side].entry(key).or_default().push(Kept {
                    row: this,
                    whole,
                    partners,
                    arrived: now,
                });
            }
        }
        self.forget_expired();
        if rows.is_empty() {
            return Ok(());
        }
        let all = concat_batches(&plain, &rows)?;
        let mut columns = all.columns().to_vec();
        if changelog {
            columns.push(kinds_column(kinds));
        }
        out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    fn buffered_rows(&self) -> u64 {
        self.kept
            .iter()
            .map(|s| s.values().map(Vec::len).sum::<usize>() as u64)
            .sum()
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("regular-join")
    }

    /// Per side, its kept rows with their partner counts.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        use arrow::datatypes::{DataType, Field, Schema};
        let mut parts = Vec::new();
        for (side, kept) in self.kept.iter().enumerate() {
            let schema = &self.sides[side].schema;
            let rows: Vec<&Kept> = kept.values().flatten().collect();
            let batch = concat_batches(schema, rows.iter().map(|k| &k.row))?;
            let mut fields: Vec<Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new("__partners", DataType::UInt64, false));
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(arrow::array::UInt64Array::from_iter_values(
                rows.iter().map(|k| k.partners),
            )));
            let with = Arc::new(Schema::new(fields));
            let batch = RecordBatch::try_new(with.clone(), columns)?;
            let metadata = crate::operators::snapshot::keyed_rows(side, schema)
                .into_iter()
                .collect();
            parts.push(crate::operators::snapshot::encode(
                &with,
                metadata,
                &[batch],
            )?);
        }
        Ok(Some(crate::operators::snapshot::join_parts(&parts)))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        use arrow::array::AsArray;
        use arrow::datatypes::UInt64Type;
        let parts = crate::operators::snapshot::split_parts(bytes)?;
        if parts.len() != 2 {
            return Err(JobError::internal(
                "a regular join's snapshot has two parts",
            ));
        }
        let now = Instant::now();
        for (side, part) in parts.into_iter().enumerate() {
            self.kept[side].clear();
            for b in crate::operators::snapshot::decode(part)?.1 {
                let n = b.num_columns() - 1;
                let partners = b.column(n).as_primitive::<UInt64Type>().clone();
                let rows = RecordBatch::try_new(
                    self.sides[side].schema.clone(),
                    b.columns()[..n].to_vec(),
                )?;
                let keys = self
                    .converter
                    .convert_columns(&evaluate_all(&self.sides[side].keys, &rows)?)?;
                let wholes = match &self.wholes[side] {
                    Some(c) => Some(c.convert_columns(rows.columns())?),
                    None => None,
                };
                for i in 0..rows.num_rows() {
                    self.kept[side]
                        .entry(keys.row(i).as_ref().to_vec())
                        .or_default()
                        .push(Kept {
                            row: rows.slice(i, 1),
                            whole: wholes.as_ref().map(|w| w.row(i).as_ref().to_vec()),
                            partners: partners.value(i),
                            arrived: now,
                        });
                }
            }
        }
        Ok(())
    }
}

/// A row of `side` alone, padded with NULLs for the other side.
fn joined_alone(
    sides: &[RegularSide; 2],
    side: usize,
    row: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, JobError> {
    let nulls = null_columns(&sides[1 - side].schema, 1);
    let (l, r) = if side == 0 {
        (row.columns().to_vec(), nulls)
    } else {
        (nulls, row.columns().to_vec())
    };
    joined(&plain(schema), l, r)
}

/// `schema` without its row-kind column, if it has one.
fn plain(schema: &SchemaRef) -> SchemaRef {
    if !is_changelog(schema) {
        return schema.clone();
    }
    let fields = schema.fields();
    Arc::new(arrow::datatypes::Schema::new(
        fields[..fields.len() - 1].to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::{Harness, col, lines, schema};
    use crate::stream::changelog::with_kinds;

    fn join(kind: JoinKind) -> Harness<RegularJoin> {
        joining(kind, false)
    }

    /// `k a` joined with `k b` (a changelog when `right_changelog`) on `k`.
    fn joining(kind: JoinKind, right_changelog: bool) -> Harness<RegularJoin> {
        let left = schema("k:str a:i64");
        let right = schema("k:str b:i64");
        let plain = schema("k:str a:i64 rk:str b:i64");
        let output = if kind == JoinKind::Inner && !right_changelog {
            plain
        } else {
            with_kinds(&plain)
        };
        let side = |s: &SchemaRef, changelog: bool| RegularSide {
            keys: vec![col("k", s)],
            schema: s.clone(),
            changelog,
        };
        let (l, r) = (side(&left, false), side(&right, right_changelog));
        Harness::new(RegularJoin::new(kind, l, r, None, output, None).unwrap())
    }

    #[test]
    fn a_retracted_row_takes_its_pairs_back() {
        let mut h = joining(JoinKind::Inner, true);
        h.push_to(0, "k:str a:i64\nx 1\nx 2");
        h.push_to(1, "k:str b:i64 __op:op\nx 10 +I");
        assert_eq!(h.take(), lines("x 1 x 10 0\nx 2 x 10 0"));
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = joining(JoinKind::Inner, true);
        restored.op.restore(&bytes).unwrap();
        for h in [&mut h, &mut restored] {
            // The right row updated: both pairs taken back (-D, 3), the new ones added.
            h.push_to(1, "k:str b:i64 __op:op\nx 10 -U\nx 11 +U");
            assert_eq!(
                h.take(),
                lines("x 1 x 10 3\nx 2 x 10 3\nx 1 x 11 0\nx 2 x 11 0")
            );
        }
        // LEFT: a left row whose last partner goes is shown padded again.
        let mut left = joining(JoinKind::Left, true);
        left.push_to(0, "k:str a:i64\nx 1");
        left.push_to(1, "k:str b:i64 __op:op\nx 10 +I");
        left.push_to(1, "k:str b:i64 __op:op\nx 10 -D\ny 5 -D");
        assert_eq!(
            left.take(),
            lines(
                "x 1 null null 0
                 x 1 null null 3
                 x 1 x 10 0
                 x 1 x 10 3
                 x 1 null null 0"
            )
        );
    }

    #[test]
    fn a_left_row_shown_padded_is_taken_back_when_its_partner_comes() {
        let mut h = join(JoinKind::Left);
        h.push_to(0, "k:str a:i64\nx 1\ny 2");
        // Kind 0 = +I, 3 = -D.
        assert_eq!(h.take(), lines("x 1 null null 0\ny 2 null null 0"));
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = join(JoinKind::Left);
        restored.op.restore(&bytes).unwrap();
        for h in [&mut h, &mut restored] {
            h.push_to(1, "k:str b:i64\nx 10\nx 11");
            assert_eq!(
                h.take(),
                lines(
                    "x 1 null null 3
                     x 1 x 10 0
                     x 1 x 11 0"
                )
            );
        }
    }

    #[test]
    fn an_inner_join_emits_each_pair_once() {
        let mut h = join(JoinKind::Inner);
        h.push_to(1, "k:str b:i64\nx 10");
        h.push_to(0, "k:str a:i64\nx 1\nz 3");
        h.push_to(1, "k:str b:i64\nx 11\nnull 5");
        assert_eq!(h.take(), lines("x 1 x 10\nx 1 x 11"));
    }
}
