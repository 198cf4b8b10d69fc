//! Window Top-N: `ROW_NUMBER() OVER (PARTITION BY window_start, window_end, keys ORDER BY …)`
//! over a window aggregation's rows, filtered to `rn <= N`. The rows of a window come together
//! when the window closes; the operator holds them until the watermark reaches the window's end
//! − 1 (the same moment), ranks each partition by the ORDER BY and emits its first N with their
//! rank. Append-only, as Flink's window Top-N: a closed window never changes. Rows of a window
//! already ranked are late: dropped and counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, filter_record_batch, lexsort_to_indices, take,
};
use arrow::datatypes::SchemaRef;
use arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use crate::operators::evaluate::{evaluate_all, key_converter};
use crate::operators::event_time::event_times;
use crate::operators::snapshot;
use crate::stream::{JobError, Operator};

pub struct WindowTopN {
    /// PARTITION BY, window_start and window_end among them.
    partition: Vec<Arc<dyn PhysicalExpr>>,
    /// ORDER BY, with each one's direction and NULL placement.
    order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    window_end: usize,
    limit: u64,
    converter: RowConverter,
    input: SchemaRef,
    /// The input's columns and the rank.
    schema: SchemaRef,
    /// Rows per window end, until the watermark closes the window.
    windows: BTreeMap<i64, Vec<RecordBatch>>,
    watermark: i64,
    late_rows: u64,
}

impl WindowTopN {
    pub fn new(
        partition: Vec<Arc<dyn PhysicalExpr>>,
        order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
        window_end: usize,
        limit: u64,
        input: SchemaRef,
        output: SchemaRef,
    ) -> Result<Self, JobError> {
        let converter = key_converter(&partition, &input)?;
        Ok(WindowTopN {
            partition,
            order,
            window_end,
            limit,
            converter,
            input,
            schema: output,
            windows: BTreeMap::new(),
            watermark: i64::MIN,
            late_rows: 0,
        })
    }

    /// Ranks one window's rows: per partition, the first `limit` by the ORDER BY.
    fn rank(&self, rows: &RecordBatch) -> Result<RecordBatch, JobError> {
        let keys = self
            .converter
            .convert_columns(&evaluate_all(&self.partition, rows)?)?;
        // Sort by partition (its row-format bytes, as a binary column), then the ORDER BY.
        let key_bytes: ArrayRef = Arc::new(arrow::array::BinaryArray::from_iter_values(
            (0..rows.num_rows()).map(|i| keys.row(i).as_ref().to_vec()),
        ));
        let mut columns = vec![SortColumn {
            values: key_bytes,
            options: None,
        }];
        for (e, options) in &self.order {
            columns.push(SortColumn {
                values: e.evaluate(rows)?.into_array(rows.num_rows())?,
                options: Some(*options),
            });
        }
        let sorted = lexsort_to_indices(&columns, None)?;
        let mut kept = Vec::new();
        let mut ranks = Vec::new();
        let mut rank = 0;
        for (n, i) in sorted.values().iter().enumerate() {
            let i = *i as usize;
            let first = n == 0 || keys.row(i) != keys.row(sorted.value(n - 1) as usize);
            rank = if first { 1 } else { rank + 1 };
            if rank <= self.limit {
                kept.push(i as u32);
                ranks.push(rank);
            }
        }
        let indices = UInt32Array::from(kept);
        let mut out: Vec<ArrayRef> = rows
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        out.push(Arc::new(UInt64Array::from(ranks)));
        Ok(RecordBatch::try_new(self.schema.clone(), out)?)
    }
}

impl Operator for WindowTopN {
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        Some(crate::operators::evaluate::plain_columns(&self.partition))
    }

    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        (column < self.input.fields().len()).then_some(column)
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        let op = WindowTopN::new(
            self.partition.clone(),
            self.order.clone(),
            self.window_end,
            self.limit,
            self.input.clone(),
            self.schema.clone(),
        );
        Some(Box::new(op.ok()?))
    }

    fn describe(&self) -> String {
        format!(
            "window Top-{} per {} partition column(s), ranked by {} key(s)",
            self.limit,
            self.partition.len(),
            self.order.len()
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
        let ends = event_times(batch.column(self.window_end))?;
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
            self.windows.entry(end).or_default().push(rows);
        }
        Ok(())
    }

    fn process_watermark(
        &mut self,
        watermark_ms: i64,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        self.watermark = self.watermark.max(watermark_ms);
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() - 1 > self.watermark {
                break;
            }
            let batches = entry.remove();
            let rows = concat_batches(&self.input, &batches)?;
            let ranked = self.rank(&rows)?;
            if ranked.num_rows() > 0 {
                out.push(ranked);
            }
        }
        Ok(())
    }

    fn late_rows(&self) -> u64 {
        self.late_rows
    }

    fn buffered_rows(&self) -> u64 {
        self.windows
            .values()
            .flatten()
            .map(|b| b.num_rows() as u64)
            .sum()
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("window-top-n")
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let mut metadata = snapshot::clock(self.watermark, self.late_rows);
        metadata.extend(snapshot::keyed_rows(0, &self.input));
        let rows: Vec<RecordBatch> = self.windows.values().flatten().cloned().collect();
        Ok(Some(snapshot::encode(&self.input, metadata, &rows)?))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        let (metadata, batches) = snapshot::decode(bytes)?;
        let watermark: i64 = snapshot::meta(&metadata, "watermark")?;
        self.windows.clear();
        // Restored rows are regrouped by their window end; none is late.
        self.watermark = i64::MIN;
        let mut sink = Vec::new();
        for b in batches {
            self.process_batch(b, &mut sink)?;
        }
        self.watermark = watermark;
        self.late_rows = snapshot::meta(&metadata, "late_rows")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::{Harness, col, lines, schema};

    /// `ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY n DESC, k) <= 2`
    fn top2() -> Harness<WindowTopN> {
        let input = schema("window_start:ts window_end:ts k:str n:i64");
        let output = schema("window_start:ts window_end:ts k:str n:i64 rn:i64");
        let output = Arc::new(arrow::datatypes::Schema::new(
            output
                .fields()
                .iter()
                .map(|f| {
                    if f.name() == "rn" {
                        arrow::datatypes::Field::new(
                            "rn",
                            arrow::datatypes::DataType::UInt64,
                            false,
                        )
                    } else {
                        f.as_ref().clone()
                    }
                })
                .collect::<Vec<_>>(),
        ));
        let descending = SortOptions {
            descending: true,
            nulls_first: true,
        };
        let op = WindowTopN::new(
            vec![col("window_start", &input), col("window_end", &input)],
            vec![
                (col("n", &input), descending),
                (col("k", &input), SortOptions::default()),
            ],
            1,
            2,
            input,
            output,
        )
        .expect("a Top-N");
        Harness::new(op)
    }

    #[test]
    fn each_window_emits_its_first_n_when_it_closes() {
        let mut h = top2();
        h.push(
            "window_start:ts window_end:ts k:str n:i64
             00:00:00        00:01:00      a     3
             00:00:00        00:01:00      b     7
             00:00:00        00:01:00      c     7
             00:01:00        00:02:00      a     1",
        );
        assert!(h.watermark("00:00:59.998").take().is_empty());
        // Ties broken by the second key; the third row is not in the top 2.
        assert_eq!(
            h.watermark("00:00:59.999").take(),
            lines(
                "00:00:00 00:01:00 b 7 1
                 00:00:00 00:01:00 c 7 2"
            )
        );
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = top2();
        restored.op.restore(&bytes).unwrap();
        // A row of a window already ranked is late.
        restored.push(
            "window_start:ts window_end:ts k:str n:i64
             00:00:00        00:01:00      z     99",
        );
        assert_eq!(restored.op.late_rows(), 1);
        assert_eq!(
            restored.watermark("00:05:00").take(),
            lines("00:01:00 00:02:00 a 1 1")
        );
    }
}
