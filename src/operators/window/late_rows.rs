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
