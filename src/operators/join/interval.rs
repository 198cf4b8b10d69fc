//! Interval join of two streams, as Flink's: rows of equal keys whose times satisfy
//! `right.time − left.time ∈ [lower, upper]` (from `r.ts BETWEEN l.ts + a AND l.ts + b`, or the
//! same with `>=`/`<=`). A pair leaves as soon as its second row arrives. Each side keeps its
//! rows while a future row of the other side may still match them: a future row comes after the
//! watermark `W`, so a left row of time `t` is kept while `t + upper > W`, a right row while
//! `t − lower > W`. In an outer join a kept row that leaves without a match is emitted padded
//! with NULLs then; a row that arrives already past that point (late) still joins what is kept,
//! and if it matched nothing and its side is outer, is padded at once — what Flink does.
//! `NULL` keys match nothing.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, interleave, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::padded::{joined, null_columns};
use crate::operators::evaluate::{evaluate_all, evaluate_predicate, key_converter};
use crate::operators::event_time::event_times;
use crate::operators::snapshot;
use crate::stream::{JobError, Operator};

/// Which rows without a partner an outer join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

impl JoinKind {
    /// Whether unmatched rows of side `side` (0 = left) are emitted, padded.
    pub fn keeps_unmatched(self, side: usize) -> bool {
        matches!(
            (self, side),
            (JoinKind::Left | JoinKind::Full, 0) | (JoinKind::Right | JoinKind::Full, 1)
        )
    }
}

/// One input of the join: how to read it and the rows it keeps.
#[derive(Clone)]
pub struct JoinSide {
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub time_column: usize,
    pub schema: SchemaRef,
}

struct Kept {
    side: JoinSide,
    /// Batches holding kept rows, by id, with how many of their rows are still kept.
    chunks: HashMap<u64, (RecordBatch, usize)>,
    next_chunk: u64,
    /// Kept rows per key.
    index: HashMap<Vec<u8>, Vec<KeptRow>>,
    /// The earliest time at which a kept row expires (`i64::MAX`: none kept).
    next_expiry: i64,
}

#[derive(Clone, Copy)]
struct KeptRow {
    time: i64,
    chunk: u64,
    row: u32,
    matched: bool,
}

pub struct IntervalJoin {
    kind: JoinKind,
    sides: [Kept; 2],
    converter: RowConverter,
    lower: i64,
    upper: i64,
    /// The rest of the ON condition, over a joined row.
    residual: Option<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    watermark: i64,
}

impl IntervalJoin {
    /// `right.time − left.time ∈ [lower, upper]`, `left.keys = right.keys`, and `residual`.
    pub fn new(
        kind: JoinKind,
        left: JoinSide,
        right: JoinSide,
        (lower, upper): (i64, i64),
        residual: Option<Arc<dyn PhysicalExpr>>,
        output: SchemaRef,
    ) -> Result<Self, JobError> {
        let converter = key_converter(&left.keys, &left.schema)?;
        let kept = |side| Kept {
            side,
            chunks: HashMap::new(),
            next_chunk: 0,
            index: HashMap::new(),
            next_expiry: i64::MAX,
        };
        Ok(IntervalJoin {
            kind,
            sides: [kept(left), kept(right)],
            converter,
            lower,
            upper,
            residual,
            schema: output,
            watermark: i64::MIN,
        })
    }

    /// When a row of `side` with time `t` can no longer match a future row.
    fn expiry(&self, side: usize, t: i64) -> i64 {
        if side == 0 {
            t.saturating_add(self.upper)
        } else {
            t.saturating_sub(self.lower)
        }
    }

    /// Whether a row of `side` at `t` and a row of the other side at `u` are close enough.
    fn within(&self, side: usize, t: i64, u: i64) -> bool {
        let gap = if side == 0 { u - t } else { t - u };
        (self.lower..=self.upper).contains(&gap)
    }

    /// Rows of `side` (at `rows`) alongside rows of the other side (at `other`), as joined
    /// rows in left-then-right column order.
    fn pairs(
        &self,
        side: usize,
        batch: &RecordBatch,
        rows: &[u32],
        other: &[(u64, u32)],
    ) -> Result<RecordBatch, JobError> {
        let this: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &UInt32Array::from(rows.to_vec()), None))
            .collect::<Result<_, _>>()?;
        let kept = &self.sides[1 - side];
        let ids: Vec<u64> = {
            let mut ids: Vec<u64> = other.iter().map(|(c, _)| *c).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let position: HashMap<u64, usize> = ids.iter().enumerate().map(|(i, c)| (*c, i)).collect();
        let at: Vec<(usize, usize)> = other
            .iter()
            .map(|(c, r)| (position[c], *r as usize))
            .collect();
        let that: Vec<ArrayRef> = (0..kept.side.schema.fields().len())
            .map(|col| {
                let arrays: Vec<&dyn Array> = ids
                    .iter()
                    .map(|c| kept.chunks[c].0.column(col).as_ref())
                    .collect();
                interleave(&arrays, &at)
            })
            .collect::<Result<_, _>>()?;
        let (left, right) = if side == 0 {
            (this, that)
        } else {
            (that, this)
        };
        joined(&self.schema, left, right)
    }

    /// Emits padded the unmatched rows among `rows` of `side`'s batch.
    fn pad(
        &self,
        side: usize,
        batch: &RecordBatch,
        rows: Vec<u32>,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len();
        let indices = UInt32Array::from(rows);
        let this: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        let other = null_columns(&self.sides[1 - side].side.schema, n);
        let (left, right) = if side == 0 {
            (this, other)
        } else {
            (other, this)
        };
        out.push(joined(&self.schema, left, right)?);
        Ok(())
    }

    /// Drops the kept rows of `side` that no future row can match; in an outer join the
    /// unmatched ones leave padded.
    fn expire(&mut self, side: usize, out: &mut Vec<RecordBatch>) -> Result<(), JobError> {
        if self.sides[side].next_expiry > self.watermark {
            return Ok(());
        }
        let (watermark, upper, lower) = (self.watermark, self.upper, self.lower);
        let expiry = |t: i64| {
            if side == 0 {
                t.saturating_add(upper)
            } else {
                t.saturating_sub(lower)
            }
        };
        let kept = &mut self.sides[side];
        let mut unmatched: Vec<(u64, u32)> = Vec::new();
        let mut released: HashMap<u64, usize> = HashMap::new();
        let mut next = i64::MAX;
        kept.index.retain(|_, rows| {
            rows.retain(|r| {
                if expiry(r.time) > watermark {
                    next = next.min(expiry(r.time));
                    return true;
                }
                if !r.matched {
                    unmatched.push((r.chunk, r.row));
                }
                *released.entry(r.chunk).or_default() += 1;
                false
            });
            !rows.is_empty()
        });
        kept.next_expiry = next;
        if self.kind.keeps_unmatched(side) && !unmatched.is_empty() {
            // Grouped per chunk, each padded from its batch.
            let mut per_chunk: HashMap<u64, Vec<u32>> = HashMap::new();
            for (c, r) in unmatched {
                per_chunk.entry(c).or_default().push(r);
            }
            let mut chunks: Vec<(u64, Vec<u32>)> = per_chunk.into_iter().collect();
            chunks.sort_unstable_by_key(|(c, _)| *c);
            for (c, mut rows) in chunks {
                rows.sort_unstable();
                let batch = self.sides[side].chunks[&c].0.clone();
                self.pad(side, &batch, rows, out)?;
            }
        }
        let kept = &mut self.sides[side];
        for (c, n) in released {
            if let Some((_, live)) = kept.chunks.get_mut(&c) {
                *live -= n.min(*live);
                if *live == 0 {
                    kept.chunks.remove(&c);
                }
            }
        }
        Ok(())
    }

    /// Keeps `rows` of `batch` (those some future row may still match) for `side`.
    fn keep(&mut self, side: usize, batch: &RecordBatch, rows: Vec<(Vec<u8>, i64, u32, bool)>) {
        if rows.is_empty() {
            return;
        }
        let expiries: Vec<i64> = rows
            .iter()
            .map(|(_, t, _, _)| self.expiry(side, *t))
            .collect();
        let kept = &mut self.sides[side];
        let chunk = kept.next_chunk;
        kept.next_chunk += 1;
        kept.chunks.insert(chunk, (batch.clone(), rows.len()));
        for ((key, time, row, matched), expiry) in rows.into_iter().zip(expiries) {
            kept.next_expiry = kept.next_expiry.min(expiry);
            kept.index.entry(key).or_default().push(KeptRow {
                time,
                chunk,
                row,
                matched,
            });
        }
    }
}

impl Operator for IntervalJoin {
    fn state_key(&self, input: usize) -> Option<Vec<usize>> {
        let [l, r] = &self.sides;
        Some(super::paired_key_columns(&l.side.keys, &r.side.keys, input))
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        let [l, r] = &self.sides;
        let op = IntervalJoin::new(
            self.kind,
            l.side.clone(),
            r.side.clone(),
            (self.lower, self.upper),
            self.residual.clone(),
            self.schema.clone(),
        );
        Some(Box::new(op.ok()?))
    }

    fn describe(&self) -> String {
        format!(
            "interval join {:?} on {} key(s), right time − left time in [{} ms, {} ms]{}",
            self.kind,
            self.sides[0].side.keys.len(),
            self.lower,
            self.upper,
            if self.residual.is_some() {
                " and a condition"
            } else {
                ""
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
        Err(JobError::internal(
            "an interval join takes its rows by side",
        ))
    }

    fn process_input(
        &mut self,
        side: usize,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let n = batch.num_rows();
        let times = event_times(batch.column(self.sides[side].side.time_column))?;
        let key_columns = evaluate_all(&self.sides[side].side.keys, &batch)?;
        let keys = self.converter.convert_columns(&key_columns)?;
        let valid = |i: usize| key_columns.iter().all(|c| c.is_valid(i));
        // Candidate pairs with kept rows of the other side.
        let mut rows: Vec<u32> = Vec::new();
        let mut other: Vec<(u64, u32)> = Vec::new();
        let mut other_at: Vec<(usize, usize)> = Vec::new();
        let other_side = &self.sides[1 - side];
        for (i, t) in times.iter().enumerate() {
            let (Some(t), true) = (*t, valid(i)) else {
                continue;
            };
            if let Some(list) = other_side.index.get(keys.row(i).as_ref()) {
                for (j, k) in list.iter().enumerate() {
                    if self.within(side, t, k.time) {
                        rows.push(i as u32);
                        other.push((k.chunk, k.row));
                        other_at.push((i, j));
                    }
                }
            }
        }
        let mut matched = vec![false; n];
        if !rows.is_empty() {
            let pairs = self.pairs(side, &batch, &rows, &other)?;
            let pass = match &self.residual {
                Some(r) => evaluate_predicate(r, &pairs)?,
                None => BooleanArray::from(vec![true; pairs.num_rows()]),
            };
            for (p, &(i, j)) in other_at.iter().enumerate() {
                if pass.value(p) && pass.is_valid(p) {
                    matched[i] = true;
                    let key = keys.row(i);
                    if let Some(list) = self.sides[1 - side].index.get_mut(key.as_ref()) {
                        list[j].matched = true;
                    }
                }
            }
            let pairs = filter_record_batch(&pairs, &pass)?;
            if pairs.num_rows() > 0 {
                out.push(pairs);
            }
        }
        // Keep what a future row may match; pad at once what is past that and unmatched.
        let mut keep = Vec::new();
        let mut pad_now = Vec::new();
        for (i, t) in times.iter().enumerate() {
            match t {
                Some(t) if valid(i) && self.expiry(side, *t) > self.watermark => {
                    keep.push((keys.row(i).as_ref().to_vec(), *t, i as u32, matched[i]));
                }
                _ if !matched[i] => pad_now.push(i as u32),
                _ => {}
            }
        }
        if self.kind.keeps_unmatched(side) {
            self.pad(side, &batch, pad_now, out)?;
        }
        self.keep(side, &batch, keep);
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
        self.expire(0, out)?;
        self.expire(1, out)
    }

    fn buffered_rows(&self) -> u64 {
        self.sides
            .iter()
            .map(|s| s.index.values().map(Vec::len).sum::<usize>() as u64)
            .sum()
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("interval-join")
    }

    /// Per side, its kept rows with a `__matched` column.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let mut parts = Vec::new();
        for (side, kept) in self.sides.iter().enumerate() {
            let rows: Vec<&KeptRow> = kept.index.values().flatten().collect();
            let ids: Vec<u64> = kept.chunks.keys().copied().collect();
            let position: HashMap<u64, usize> =
                ids.iter().enumerate().map(|(i, c)| (*c, i)).collect();
            let at: Vec<(usize, usize)> = rows
                .iter()
                .map(|r| (position[&r.chunk], r.row as usize))
                .collect();
            let mut columns: Vec<ArrayRef> = (0..kept.side.schema.fields().len())
                .map(|col| {
                    let arrays: Vec<&dyn Array> = ids
                        .iter()
                        .map(|c| kept.chunks[c].0.column(col).as_ref())
                        .collect();
                    if arrays.is_empty() {
                        Ok(arrow::array::new_empty_array(
                            kept.side.schema.field(col).data_type(),
                        ))
                    } else {
                        interleave(&arrays, &at)
                    }
                })
                .collect::<Result<_, _>>()?;
            columns.push(Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.matched).collect::<Vec<_>>(),
            )));
            let mut fields: Vec<Field> = kept
                .side
                .schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            fields.push(Field::new("__matched", DataType::Boolean, false));
            let schema = Arc::new(Schema::new(fields));
            let batch = RecordBatch::try_new(schema.clone(), columns)?;
            let mut metadata = HashMap::new();
            metadata.insert("watermark".to_string(), self.watermark.to_string());
            metadata.extend(snapshot::keyed_rows(side, &kept.side.schema));
            parts.push(snapshot::encode(&schema, metadata, &[batch])?);
        }
        Ok(Some(snapshot::join_parts(&parts)))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        let parts = snapshot::split_parts(bytes)?;
        if parts.len() != 2 {
            return Err(JobError::internal(
                "an interval join's snapshot has two parts",
            ));
        }
        for (side, part) in parts.into_iter().enumerate() {
            let (metadata, batches) = snapshot::decode(part)?;
            self.watermark = snapshot::meta(&metadata, "watermark")?;
            let kept = &mut self.sides[side];
            kept.chunks.clear();
            kept.index.clear();
            kept.next_expiry = i64::MAX;
            for b in batches {
                let width = b.num_columns() - 1;
                let matched = b.column(width).as_boolean().clone();
                let schema = self.sides[side].side.schema.clone();
                let rows = RecordBatch::try_new(schema, b.columns()[..width].to_vec())?;
                let times = event_times(rows.column(self.sides[side].side.time_column))?;
                let keys = self
                    .converter
                    .convert_columns(&evaluate_all(&self.sides[side].side.keys, &rows)?)?;
                let entries = (0..rows.num_rows())
                    .filter_map(|i| {
                        Some((
                            keys.row(i).as_ref().to_vec(),
                            times[i]?,
                            i as u32,
                            matched.value(i),
                        ))
                    })
                    .collect();
                self.keep(side, &rows, entries);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::Operator as Op;
    use datafusion::physical_expr::expressions::{BinaryExpr, lit};

    use super::*;
    use crate::operators::testing::{Harness, col, lines, schema};

    /// `l JOIN r ON l.k = r.k AND r.ts BETWEEN l.ts - 1 s AND l.ts + 2 s [AND r.b > 0]`
    fn join(kind: JoinKind, with_residual: bool) -> Harness<IntervalJoin> {
        let left = schema("k:str ts:ts a:i64");
        let right = schema("k:str ts:ts b:i64");
        let output = schema("lk:str lts:ts a:i64 rk:str rts:ts b:i64");
        let residual = with_residual.then(|| {
            Arc::new(BinaryExpr::new(col("b", &output), Op::Gt, lit(0i64))) as Arc<dyn PhysicalExpr>
        });
        let side = |s: &SchemaRef| JoinSide {
            keys: vec![col("k", s)],
            time_column: 1,
            schema: s.clone(),
        };
        let op = IntervalJoin::new(
            kind,
            side(&left),
            side(&right),
            (-1_000, 2_000),
            residual,
            output,
        )
        .expect("an interval join");
        Harness::new(op)
    }

    #[test]
    fn pairs_leave_when_their_second_row_arrives() {
        let mut h = join(JoinKind::Inner, false);
        h.push_to(
            0,
            "k:str ts:ts     a:i64
             x     00:00:10  1
             y     00:00:10  2",
        );
        assert!(h.take().is_empty());
        h.push_to(
            1,
            "k:str ts:ts     b:i64
             x     00:00:09  10
             x     00:00:12  11
             x     00:00:12.001 12
             y     00:00:08.999 13",
        );
        assert_eq!(
            h.take(),
            lines(
                "x 00:00:10 1 x 00:00:09 10
                 x 00:00:10 1 x 00:00:12 11"
            )
        );
        // Right rows are kept too: a later left row of x at 11 s matches 12 s and 12.001 s
        // (not 9 s: 2 s before it).
        h.push_to(
            0,
            "k:str ts:ts     a:i64
             x     00:00:11  3",
        );
        assert_eq!(
            h.take(),
            lines(
                "x 00:00:11 3 x 00:00:12 11
                 x 00:00:11 3 x 00:00:12.001 12"
            )
        );
    }

    #[test]
    fn outer_rows_without_a_partner_leave_padded_when_none_can_come() {
        let mut h = join(JoinKind::Full, true);
        h.push_to(
            0,
            "k:str ts:ts     a:i64
             x     00:00:10  1
             z     00:00:10  2",
        );
        h.push_to(
            1,
            "k:str ts:ts     b:i64
             x     00:00:11  -5
             x     00:00:11  5",
        );
        // The residual refuses b = -5: that pair does not count as a match.
        assert_eq!(h.take(), lines("x 00:00:10 1 x 00:00:11 5"));
        // A left row of 10 s may match right rows up to 12 s, and the right row b = -5 (11 s)
        // left rows up to 12 s: both kept until the watermark is 12 s.
        assert!(h.watermark("00:00:11.999").take().is_empty());
        assert_eq!(
            h.watermark("00:00:12").take(),
            lines(
                "z 00:00:10 2 null null null
                 null null null x 00:00:11 -5"
            )
        );
        // A late row matching nothing is padded at once.
        h.push_to(
            0,
            "k:str ts:ts     a:i64
             q     00:00:01  9",
        );
        assert_eq!(h.take(), lines("q 00:00:01 9 null null null"));
        assert_eq!(h.op.buffered_rows(), 0);
    }

    #[test]
    fn a_restored_join_keeps_its_rows_and_what_they_matched() {
        let mut h = join(JoinKind::Left, false);
        h.push_to(
            0,
            "k:str ts:ts     a:i64
             x     00:00:10  1
             y     00:00:10  2",
        );
        h.push_to(
            1,
            "k:str ts:ts     b:i64
             x     00:00:10  7",
        );
        h.take();
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = join(JoinKind::Left, false);
        restored.op.restore(&bytes).unwrap();
        for h in [&mut h, &mut restored] {
            h.push_to(
                1,
                "k:str ts:ts     b:i64
                 x     00:00:11  8",
            );
            assert_eq!(h.take(), lines("x 00:00:10 1 x 00:00:11 8"));
            // x matched: only y leaves padded.
            assert_eq!(
                h.watermark("00:00:20").take(),
                lines("y 00:00:10 2 null null null")
            );
        }
    }
}
