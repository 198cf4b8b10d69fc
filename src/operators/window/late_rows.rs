//! Late-row side output: in front of a window aggregation or MATCH_RECOGNIZE, late rows are
//! taken out of the stream and handed to a side output (the table named by
//! `'table.exec.late-rows' = 'side-output:<table>'`), with every column of the input. The
//! operator then never sees them. Lateness is the operator's own rule, judged against the
//! pipeline's current watermark: a row is late when its slice (TUMBLE/HOP/CUMULATE) or its own
//! session window has already closed, or (MATCH_RECOGNIZE) when it is at or before the
//! watermark.

use std::sync::atomic::Ordering::Relaxed;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{filter_record_batch, not};
use arrow::datatypes::SchemaRef;

use super::WindowKind;
use crate::operators::event_time::event_times;
use crate::stream::{JobError, Operator, WatermarkCell};

pub struct LateRowSplitter {
    /// `None`: lateness of single rows (MATCH_RECOGNIZE): late when at or before the watermark.
    kind: Option<WindowKind>,
    time_column: usize,
    watermark: WatermarkCell,
    schema: SchemaRef,
    side: Vec<RecordBatch>,
    late_rows: u64,
    allowed_lateness: i64,
}

impl LateRowSplitter {
    pub fn new(
        kind: WindowKind,
        time_column: usize,
        watermark: WatermarkCell,
        schema: SchemaRef,
        allowed_lateness: i64,
    ) -> Self {
        LateRowSplitter {
            kind: Some(kind),
            allowed_lateness,
            ..Self::for_rows(time_column, watermark, schema)
        }
    }

    /// For MATCH_RECOGNIZE: a row at or before the watermark is late.
    pub fn for_rows(time_column: usize, watermark: WatermarkCell, schema: SchemaRef) -> Self {
        LateRowSplitter {
            kind: None,
            time_column,
            watermark,
            schema,
            side: Vec::new(),
            late_rows: 0,
            allowed_lateness: 0,
        }
    }

    /// The watermark from which a row at `t` can no longer change any result: its earliest
    /// window has been emitted, or with allowed lateness, its last window's allowance is over.
    fn closes_at(&self, t: i64) -> i64 {
        let Some(kind) = self.kind else {
            return t;
        };
        let Some((slice, _)) = kind.slicing() else {
            let WindowKind::Session { gap } = kind else {
                unreachable!("only sessions are unsliced")
            };
            return t + gap - 1;
        };
        let s = kind.slice_start(t);
        if self.allowed_lateness > 0 {
            kind.last_window_end(s) - 1 + self.allowed_lateness
        } else {
            s + slice - 1
        }
    }
}

impl Operator for LateRowSplitter {
    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        Some(column)
    }

    fn instance(&self, watermark: &WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(LateRowSplitter {
            kind: self.kind,
            time_column: self.time_column,
            watermark: watermark.clone(),
            schema: self.schema.clone(),
            side: Vec::new(),
            late_rows: 0,
            allowed_lateness: self.allowed_lateness,
        }))
    }

    fn describe(&self) -> String {
        "LateRows: late rows → side output".to_string()
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
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let wm = self.watermark.load(Relaxed);
        let times = event_times(batch.column(self.time_column))?;
        let late: BooleanArray = times
            .iter()
            .map(|t| Some(t.is_none_or(|t| self.closes_at(t) <= wm)))
            .collect();
        let n = late.true_count();
        if n == 0 {
            out.push(batch);
            return Ok(());
        }
        self.late_rows += n as u64;
        self.side.push(filter_record_batch(&batch, &late)?);
        let on_time = filter_record_batch(&batch, &not(&late)?)?;
        if on_time.num_rows() > 0 {
            out.push(on_time);
        }
        Ok(())
    }

    fn take_side_output(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.side)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::operators::testing::{Harness, format, lines, ms, schema};
    use crate::stream::new_watermark_cell;

    #[test]
    fn rows_of_fired_windows_go_to_the_side_output_whole() {
        // TUMBLE 10 s, watermark at 10 s: [0, 10) has fired, a row at 9 s is late.
        let cell = new_watermark_cell();
        let kind = WindowKind::Tumble {
            size: 10_000,
            offset: 0,
        };
        let op = LateRowSplitter::new(kind, 1, cell.clone(), schema("k:str ts:ts"), 0);
        let mut h = Harness::new(op);
        cell.store(ms("00:00:10"), Relaxed);
        h.push(
            "k:str ts:ts
             a     00:00:09
             b     00:00:10
             c     00:00:11",
        );
        assert_eq!(h.take(), lines("b 00:00:10\n c 00:00:11"));
        assert_eq!(format(&h.op.take_side_output()), lines("a 00:00:09"));
        assert_eq!(h.op.late_rows(), 1);
    }

    #[test]
    fn allowed_lateness_keeps_rows_until_the_last_window_is_past_it() {
        // HOP size 10 s slide 5 s with 3 s allowed: a row at 6 s is in windows up to [5, 15),
        // updatable until the watermark passes 15 s - 1 ms + 3 s.
        let cell = new_watermark_cell();
        let kind = WindowKind::Hop {
            slide: 5_000,
            size: 10_000,
            offset: 0,
        };
        let op = LateRowSplitter::new(kind, 1, cell.clone(), schema("k:str ts:ts"), 3_000);
        let mut h = Harness::new(op);
        cell.store(ms("00:00:17.998"), Relaxed);
        h.push("k:str ts:ts\n a 00:00:06");
        assert_eq!(h.take().len(), 1, "still updatable");
        cell.store(ms("00:00:17.999"), Relaxed);
        h.push("k:str ts:ts\n a 00:00:06");
        assert!(h.take().is_empty());
        assert_eq!(h.op.late_rows(), 1);
    }

    #[test]
    fn for_match_recognize_a_row_at_or_before_the_watermark_is_late() {
        let cell = new_watermark_cell();
        let op = LateRowSplitter::for_rows(1, cell.clone(), schema("k:str ts:ts"));
        let mut h = Harness::new(op);
        cell.store(ms("00:00:05"), Relaxed);
        h.push("k:str ts:ts\n a 00:00:05\n b 00:00:05.001");
        assert_eq!(h.take(), lines("b 00:00:05.001"));
        assert_eq!(format(&h.op.take_side_output()), lines("a 00:00:05"));
    }
}
