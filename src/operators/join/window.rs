//! Window join of two windowed streams, as Flink's: rows of the same window (equal
//! `window_start` and `window_end`, part of the ON keys) and equal keys join when the window
//! closes — the watermark reaching `window_end − 1`, when the window aggregations below emit it.
//! Each side holds its rows per window until then; the join is then a hash join of that window's
//! rows: INNER, LEFT/RIGHT/FULL (unmatched rows padded with NULLs), SEMI and ANTI (`IN`/`EXISTS`,
//! `NOT IN`/`NOT EXISTS`: the rows of one side with, or without, a partner). Append-only: a closed
//! window never changes; its rows arriving later are late, dropped and counted. `NULL` keys match
//! nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take};
use arrow::datatypes::SchemaRef;
use arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::padded::{joined, null_columns};
use crate::operators::evaluate::{evaluate_all, evaluate_predicate, key_converter};
use crate::operators::event_time::event_times;
use crate::operators::snapshot;
use crate::stream::{JobError, Operator};

/// What a window join emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowJoinKind {
    Inner,
    Left,
    Right,
    Full,
    /// The rows of side 0 (`LeftSemi`) or 1 with a partner.
    Semi(usize),
    /// The rows of side 0 or 1 without one (`null_aware`: `NOT IN`, where a NULL key on the
    /// other side leaves no row).
    Anti {
        side: usize,
        null_aware: bool,
    },
}

/// One input: its ON keys (window_start and window_end among them) and where its window ends.
#[derive(Clone)]
pub struct WindowSide {
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub window_end: usize,
    pub schema: SchemaRef,
}

pub struct WindowJoin {
    kind: WindowJoinKind,
    sides: [WindowSide; 2],
    converter: RowConverter,
    residual: Option<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    /// Per side, rows per window end until the window closes.
    windows: [BTreeMap<i64, Vec<RecordBatch>>; 2],
    watermark: i64,
    late_rows: u64,
}

impl WindowJoin {
    pub fn new(
        kind: WindowJoinKind,
        left: WindowSide,
        right: WindowSide,
        residual: Option<Arc<dyn PhysicalExpr>>,
        output: SchemaRef,
    ) -> Result<Self, JobError> {
        let converter = key_converter(&left.keys, &left.schema)?;
        Ok(WindowJoin {
            kind,
            sides: [left, right],
            converter,
            residual,
            schema: output,
            windows: [BTreeMap::new(), BTreeMap::new()],
            watermark: i64::MIN,
            late_rows: 0,
        })
    }

    /// Joins one closed window's rows of both sides.
    fn join(&self, rows: [RecordBatch; 2], out: &mut Vec<RecordBatch>) -> Result<(), JobError> {
        let [left, right] = &rows;
        let keys = |side: usize, batch: &RecordBatch| -> Result<_, JobError> {
            let columns = evaluate_all(&self.sides[side].keys, batch)?;
            let valid: Vec<bool> = (0..batch.num_rows())
                .map(|i| columns.iter().all(|c| c.is_valid(i)))
                .collect();
            Ok((self.converter.convert_columns(&columns)?, valid))
        };
        let (lkeys, lvalid) = keys(0, left)?;
        let (rkeys, rvalid) = keys(1, right)?;
        let mut index: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for (j, _) in rvalid.iter().enumerate().filter(|(_, v)| **v) {
            index.entry(rkeys.row(j).data()).or_default().push(j as u32);
        }
        let (mut li, mut ri) = (Vec::new(), Vec::new());
        for (i, _) in lvalid.iter().enumerate().filter(|(_, v)| **v) {
            if let Some(matches) = index.get(lkeys.row(i).data()) {
                li.extend(std::iter::repeat_n(i as u32, matches.len()));
                ri.extend_from_slice(matches);
            }
        }
        // Pairs that pass the rest of the ON condition.
        let (li, ri) = (UInt32Array::from(li), UInt32Array::from(ri));
        let columns = |b: &RecordBatch, idx: &UInt32Array| -> Result<Vec<ArrayRef>, JobError> {
            b.columns()
                .iter()
                .map(|c| take(c.as_ref(), idx, None).map_err(JobError::from))
                .collect()
        };
        let pair_schema = match self.kind {
            WindowJoinKind::Semi(_) | WindowJoinKind::Anti { .. } => {
                let mut fields: Vec<_> = self.sides[0].schema.fields().iter().cloned().collect();
                fields.extend(self.sides[1].schema.fields().iter().cloned());
                Arc::new(arrow::datatypes::Schema::new(fields))
            }
            _ => self.schema.clone(),
        };
        let pairs = joined(&pair_schema, columns(left, &li)?, columns(right, &ri)?)?;
        let pass = match &self.residual {
            Some(r) => evaluate_predicate(r, &pairs)?,
            None => BooleanArray::from(vec![true; pairs.num_rows()]),
        };
        let mut matched = [vec![false; left.num_rows()], vec![false; right.num_rows()]];
        for p in (0..pass.len()).filter(|&p| pass.is_valid(p) && pass.value(p)) {
            matched[0][li.value(p) as usize] = true;
            matched[1][ri.value(p) as usize] = true;
        }
        let only = |side: usize, want: bool| -> Result<RecordBatch, JobError> {
            let keep: BooleanArray = matched[side].iter().map(|m| Some(*m == want)).collect();
            Ok(filter_record_batch(&rows[side], &keep)?)
        };
        match self.kind {
            WindowJoinKind::Semi(side) => out.push(rename(only(side, true)?, &self.schema)?),
            WindowJoinKind::Anti { side, null_aware } => {
                let other_valid = if side == 0 { &rvalid } else { &lvalid };
                let valid = if side == 0 { &lvalid } else { &rvalid };
                if !(null_aware && other_valid.iter().any(|v| !v)) {
                    let keep: BooleanArray = matched[side]
                        .iter()
                        .zip(valid)
                        .map(|(m, v)| Some(!m && (*v || !null_aware)))
                        .collect();
                    let rows = filter_record_batch(&rows[side], &keep)?;
                    out.push(rename(rows, &self.schema)?);
                }
            }
            kind => {
                out.push(filter_record_batch(&pairs, &pass)?);
                for side in [0, 1] {
                    let pads = matches!(
                        (kind, side),
                        (WindowJoinKind::Left | WindowJoinKind::Full, 0)
                            | (WindowJoinKind::Right | WindowJoinKind::Full, 1)
                    );
                    if pads {
                        let alone = only(side, false)?;
                        let nulls = null_columns(&self.sides[1 - side].schema, alone.num_rows());
                        let this = alone.columns().to_vec();
                        let (l, r) = if side == 0 {
                            (this, nulls)
                        } else {
                            (nulls, this)
                        };
                        out.push(joined(&self.schema, l, r)?);
                    }
                }
            }
        }
        out.retain(|b| b.num_rows() > 0);
        Ok(())
    }
}

/// `batch`'s columns under the output's names (a SEMI or ANTI join emits one side's rows).
fn rename(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, JobError> {
    Ok(RecordBatch::try_new(
        schema.clone(),
        batch.columns().to_vec(),
    )?)
}

impl Operator for WindowJoin {
    fn state_key(&self, input: usize) -> Option<Vec<usize>> {
        let [l, r] = &self.sides;
        Some(super::paired_key_columns(&l.keys, &r.keys, input))
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        let [l, r] = &self.sides;
        let op = WindowJoin::new(
            self.kind,
            l.clone(),
            r.clone(),
            self.residual.clone(),
            self.schema.clone(),
        );
        Some(Box::new(op.ok()?))
    }

    fn describe(&self) -> String {
        format!(
            "window join {:?} on {} key(s) (window_start and window_end among them){}",
            self.kind,
            self.sides[0].keys.len(),
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
        Err(JobError::internal("a window join takes its rows by side"))
    }

    fn process_input(
        &mut self,
        side: usize,
        batch: RecordBatch,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let ends = event_times(batch.column(self.sides[side].window_end))?;
        let mut per_end: HashMap<i64, Vec<bool>> = HashMap::new();
        for (i, end) in ends.iter().enumerate() {
            let Some(end) = *end else { continue };
            if end - 1 <= self.watermark {
                self.late_rows += 1;
                continue;
            }
            per_end
                .entry(end)
                .or_insert_with(|| vec![false; batch.num_rows()])[i] = true;
        }
        for (end, mask) in per_end {
            let rows = filter_record_batch(&batch, &mask.into())?;
            self.windows[side].entry(end).or_default().push(rows);
        }
        Ok(())
    }

    fn process_watermark(
        &mut self,
        watermark_ms: i64,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        self.watermark = self.watermark.max(watermark_ms);
        loop {
            let next = [0, 1]
                .iter()
                .filter_map(|&s| self.windows[s].keys().next().copied())
                .min();
            let Some(end) = next.filter(|e| e - 1 <= self.watermark) else {
                break;
            };
            let mut side = |s: usize| {
                let batches = self.windows[s].remove(&end).unwrap_or_default();
                concat_batches(&self.sides[s].schema, &batches)
            };
            let (left, right) = (side(0)?, side(1)?);
            self.join([left, right], out)?;
        }
        Ok(())
    }

    fn late_rows(&self) -> u64 {
        self.late_rows
    }

    fn buffered_rows(&self) -> u64 {
        self.windows
            .iter()
            .flat_map(|w| w.values().flatten())
            .map(|b| b.num_rows() as u64)
            .sum()
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("window-join")
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let metadata = snapshot::clock(self.watermark, self.late_rows);
        let parts = [0, 1]
            .iter()
            .map(|&s| {
                let rows: Vec<RecordBatch> = self.windows[s].values().flatten().cloned().collect();
                let mut metadata = metadata.clone();
                metadata.extend(snapshot::keyed_rows(s, &self.sides[s].schema));
                snapshot::encode(&self.sides[s].schema, metadata, &rows)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(snapshot::join_parts(&parts)))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        let parts = snapshot::split_parts(bytes)?;
        if parts.len() != 2 {
            return Err(JobError::internal("a window join's snapshot has two parts"));
        }
        self.windows = [BTreeMap::new(), BTreeMap::new()];
        self.watermark = i64::MIN;
        let mut restored = (i64::MIN, 0);
        for (side, part) in parts.into_iter().enumerate() {
            let (metadata, batches) = snapshot::decode(part)?;
            restored = (
                snapshot::meta(&metadata, "watermark")?,
                snapshot::meta(&metadata, "late_rows")?,
            );
            let mut sink = Vec::new();
            for b in batches {
                self.process_input(side, b, &mut sink)?;
            }
        }
        (self.watermark, self.late_rows) = restored;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::{Harness, col, lines, schema};

    fn window_join(kind: WindowJoinKind) -> Harness<WindowJoin> {
        let left = schema("ws:ts we:ts k:str a:i64");
        let right = schema("ws:ts we:ts k:str b:i64");
        let output = match kind {
            WindowJoinKind::Semi(0) | WindowJoinKind::Anti { side: 0, .. } => left.clone(),
            _ => schema("ws:ts we:ts k:str a:i64 rws:ts rwe:ts rk:str b:i64"),
        };
        let side = |s: &SchemaRef| WindowSide {
            keys: vec![col("ws", s), col("we", s), col("k", s)],
            window_end: 1,
            schema: s.clone(),
        };
        Harness::new(WindowJoin::new(kind, side(&left), side(&right), None, output).unwrap())
    }

    const LEFT: &str = "ws:ts    we:ts    k:str a:i64
                        00:00:00 00:01:00 x     1
                        00:00:00 00:01:00 y     2
                        00:00:00 00:01:00 null  3";
    const RIGHT: &str = "ws:ts    we:ts    k:str b:i64
                         00:00:00 00:01:00 x     10
                         00:00:00 00:01:00 z     30
                         00:01:00 00:02:00 x     40";

    #[test]
    fn a_window_joins_when_it_closes_and_pads_what_found_no_partner() {
        let mut h = window_join(WindowJoinKind::Full);
        h.push_to(0, LEFT).push_to(1, RIGHT);
        assert!(h.watermark("00:00:59.998").take().is_empty());
        assert_eq!(
            h.watermark("00:00:59.999").take_sorted(),
            lines(
                "00:00:00 00:01:00 null 3 null null null null
                 00:00:00 00:01:00 x 1 00:00:00 00:01:00 x 10
                 00:00:00 00:01:00 y 2 null null null null
                 null null null null 00:00:00 00:01:00 z 30"
            )
        );
        // The next window has only a right row; a row of the closed window is late.
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = window_join(WindowJoinKind::Full);
        restored.op.restore(&bytes).unwrap();
        restored.push_to(0, "ws:ts we:ts k:str a:i64\n00:00:00 00:01:00 x 5");
        assert_eq!(restored.op.late_rows(), 1);
        assert_eq!(
            restored.watermark("00:05:00").take(),
            lines("null null null null 00:01:00 00:02:00 x 40")
        );
    }

    #[test]
    fn semi_and_anti_joins_emit_one_sides_rows() {
        let mut semi = window_join(WindowJoinKind::Semi(0));
        semi.push_to(0, LEFT).push_to(1, RIGHT);
        assert_eq!(
            semi.watermark("00:05:00").take(),
            lines("00:00:00 00:01:00 x 1")
        );
        let mut anti = window_join(WindowJoinKind::Anti {
            side: 0,
            null_aware: false,
        });
        anti.push_to(0, LEFT).push_to(1, RIGHT);
        assert_eq!(
            anti.watermark("00:05:00").take_sorted(),
            lines(
                "00:00:00 00:01:00 null 3
                 00:00:00 00:01:00 y 2"
            )
        );
        // NOT IN: a NULL key cannot be told apart from any value, so it is left out.
        let mut not_in = window_join(WindowJoinKind::Anti {
            side: 0,
            null_aware: true,
        });
        not_in.push_to(0, LEFT).push_to(1, RIGHT);
        assert_eq!(
            not_in.watermark("00:05:00").take(),
            lines("00:00:00 00:01:00 y 2")
        );
    }
}
