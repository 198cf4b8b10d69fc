//! Regular join of two append-only streams (an equi-join without time bounds), as Flink's: every
//! row is kept — for ever, or until `table.exec.state.ttl` after it arrived — and a pair leaves
//! when its second row arrives. INNER emits only pairs (append-only). An outer side's row without
//! a partner leaves at once padded with NULLs (`+I`); when its first partner arrives that row is
//! taken back (`-D`) before the pair (`+I`): an outer regular join is a changelog. `NULL` keys
//! match nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::SchemaRef;
use arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::interval::JoinKind;
use super::padded::{joined, null_columns};
use crate::operators::evaluate::{evaluate_all, evaluate_predicate, key_converter};
use crate::stream::changelog::{RowKind, kinds_column};
use crate::stream::{JobError, Operator};

/// One input: its equality keys and its rows' schema.
pub struct RegularSide {
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub schema: SchemaRef,
}

struct Kept {
    row: RecordBatch,
    /// Partners found so far (for padding and its retraction).
    partners: u64,
    arrived: Instant,
}

pub struct RegularJoin {
    kind: JoinKind,
    sides: [RegularSide; 2],
    converter: RowConverter,
    residual: Option<Arc<dyn PhysicalExpr>>,
    /// The joined columns, and the row kind when outer.
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
        Ok(RegularJoin {
            kind,
            sides: [left, right],
            converter,
            residual,
            schema: output,
            kept: [HashMap::new(), HashMap::new()],
            ttl,
            since_sweep: 0,
        })
    }

    fn outer(&self) -> bool {
        self.kind != JoinKind::Inner
    }

    /// The joined columns without the row kind.
    fn plain_schema(&self) -> SchemaRef {
        let fields = self.schema.fields();
        let n = if self.outer() {
            fields.len() - 1
        } else {
            fields.len()
        };
        Arc::new(arrow::datatypes::Schema::new(fields[..n].to_vec()))
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
        let key_columns = evaluate_all(&self.sides[side].keys, &batch)?;
        let keys = self.converter.convert_columns(&key_columns)?;
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
        // was), or the row alone, padded, on an outer side.
        let mut rows: Vec<RecordBatch> = Vec::new();
        let mut kinds: Vec<RowKind> = Vec::new();
        let now = Instant::now();
        let outer = self.outer();
        let other_outer = self.kind.keeps_unmatched(1 - side);
        let mut next = 0;
        for i in 0..batch.num_rows() {
            let key = keys.row(i).as_ref().to_vec();
            let mut partners = 0;
            while next < candidates.len() && candidates[next].0 == i {
                let (p, (_, j)) = (next, candidates[next]);
                next += 1;
                if !(pass.is_valid(p) && pass.value(p)) {
                    continue;
                }
                let other = &mut self.kept[1 - side]
                    .get_mut(&key)
                    .expect("a candidate's key")[j];
                if other_outer && other.partners == 0 {
                    let padded =
                        joined_alone(&self.sides, 1 - side, &other.row, &self.schema, outer)?;
                    rows.push(padded);
                    kinds.push(RowKind::Delete);
                }
                other.partners += 1;
                partners += 1;
                rows.push(pairs.slice(p, 1));
                kinds.push(RowKind::Insert);
            }
            let this = batch.slice(i, 1);
            if partners == 0 && self.kind.keeps_unmatched(side) {
                rows.push(joined_alone(&self.sides, side, &this, &self.schema, outer)?);
                kinds.push(RowKind::Insert);
            }
            if valid(i) || self.kind.keeps_unmatched(side) {
                self.kept[side].entry(key).or_default().push(Kept {
                    row: this,
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
        if outer {
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
            parts.push(crate::operators::snapshot::encode(
                &with,
                HashMap::new(),
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
                for i in 0..rows.num_rows() {
                    self.kept[side]
                        .entry(keys.row(i).as_ref().to_vec())
                        .or_default()
                        .push(Kept {
                            row: rows.slice(i, 1),
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
    outer: bool,
) -> Result<RecordBatch, JobError> {
    let nulls = null_columns(&sides[1 - side].schema, 1);
    let (l, r) = if side == 0 {
        (row.columns().to_vec(), nulls)
    } else {
        (nulls, row.columns().to_vec())
    };
    let fields = schema.fields();
    let n = if outer {
        fields.len() - 1
    } else {
        fields.len()
    };
    joined(
        &Arc::new(arrow::datatypes::Schema::new(fields[..n].to_vec())),
        l,
        r,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::{Harness, col, lines, schema};
    use crate::stream::changelog::with_kinds;

    fn join(kind: JoinKind) -> Harness<RegularJoin> {
        let left = schema("k:str a:i64");
        let right = schema("k:str b:i64");
        let plain = schema("k:str a:i64 rk:str b:i64");
        let output = if kind == JoinKind::Inner {
            plain
        } else {
            with_kinds(&plain)
        };
        let side = |s: &SchemaRef| RegularSide {
            keys: vec![col("k", s)],
            schema: s.clone(),
        };
        Harness::new(RegularJoin::new(kind, side(&left), side(&right), None, output, None).unwrap())
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
