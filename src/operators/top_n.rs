//! Top-N outside windows: `ROW_NUMBER() OVER (PARTITION BY keys ORDER BY …) <= N` over an
//! append-only input, as Flink's: each partition keeps its first N rows by the ORDER BY (ties
//! in arrival order), and a row that enters them changes the ranks it displaces — for each rank
//! whose row changed, `-U` the old row with that rank and `+U` the new (`+I` for a rank filled the
//! first time). So the result is a changelog whose current state is the top N with their ranks.
//! The state is N rows per partition.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::{SortOptions, concat_batches};
use arrow::datatypes::SchemaRef;
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::operators::evaluate::{evaluate_all, key_converter};
use crate::operators::snapshot;
use crate::stream::changelog::{RowKind, kinds_column};
use crate::stream::{JobError, Operator};

pub struct UpdatingTopN {
    partition: Vec<Arc<dyn PhysicalExpr>>,
    partitions: RowConverter,
    order: Vec<Arc<dyn PhysicalExpr>>,
    /// ORDER BY values as rows that compare in ranking order.
    ranking: RowConverter,
    limit: usize,
    input: SchemaRef,
    /// The input's columns, the rank and the row kind.
    schema: SchemaRef,
    /// Per partition, its first rows in ranking order: (ranking key, arrival, the row).
    tops: HashMap<OwnedRow, Vec<(OwnedRow, u64, RecordBatch)>>,
    arrivals: u64,
}

impl UpdatingTopN {
    pub fn new(
        partition: Vec<Arc<dyn PhysicalExpr>>,
        order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
        limit: usize,
        input: SchemaRef,
        output: SchemaRef,
    ) -> Result<Self, JobError> {
        let partitions = key_converter(&partition, &input)?;
        let fields = order
            .iter()
            .map(|(e, o)| Ok(SortField::new_with_options(e.data_type(&input)?, *o)))
            .collect::<Result<Vec<_>, JobError>>()?;
        Ok(UpdatingTopN {
            partition,
            partitions,
            order: order.into_iter().map(|(e, _)| e).collect(),
            ranking: RowConverter::new(fields)?,
            limit: limit.max(1),
            input,
            schema: output,
            tops: HashMap::new(),
            arrivals: 0,
        })
    }
}

impl Operator for UpdatingTopN {
    fn describe(&self) -> String {
        format!(
            "Top-{} per {} partition column(s), ranked by {} key(s) (updating)",
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
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let parts = self
            .partitions
            .convert_columns(&evaluate_all(&self.partition, &batch)?)?;
        let ranks = self
            .ranking
            .convert_columns(&evaluate_all(&self.order, &batch)?)?;
        // Each touched partition's ranked rows before the batch, to tell what changed.
        let mut before: HashMap<OwnedRow, Vec<(u64, RecordBatch)>> = HashMap::new();
        let mut touched: Vec<OwnedRow> = Vec::new();
        for i in 0..batch.num_rows() {
            let part = parts.row(i).owned();
            let top = self.tops.entry(part.clone()).or_default();
            if !before.contains_key(&part) {
                let ranked = top.iter().map(|(_, a, r)| (*a, r.clone())).collect();
                before.insert(part.clone(), ranked);
                touched.push(part);
            }
            let key = ranks.row(i);
            // After the rows ranked the same or higher: ties keep arrival order.
            let at = top.partition_point(|(k, _, _)| k.row() <= key);
            if at >= self.limit {
                continue;
            }
            self.arrivals += 1;
            top.insert(at, (key.owned(), self.arrivals, batch.slice(i, 1)));
            top.truncate(self.limit);
        }
        // Per changed rank: -U the row that had it and +U the new one (+I for a rank new).
        let mut rows: Vec<RecordBatch> = Vec::new();
        let mut kinds = Vec::new();
        let mut numbers: Vec<u64> = Vec::new();
        for part in touched {
            let old = &before[&part];
            for (rank, (_, arrival, row)) in self.tops[&part].iter().enumerate() {
                let number = rank as u64 + 1;
                match old.get(rank) {
                    Some((was, _)) if was == arrival => continue,
                    Some((_, gone)) => {
                        rows.extend([gone.clone(), row.clone()]);
                        kinds.extend([RowKind::UpdateBefore, RowKind::UpdateAfter]);
                        numbers.extend([number, number]);
                    }
                    None => {
                        rows.push(row.clone());
                        kinds.push(RowKind::Insert);
                        numbers.push(number);
                    }
                }
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let rows = concat_batches(&self.input, &rows)?;
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from(numbers)));
        columns.push(kinds_column(kinds));
        out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    fn buffered_rows(&self) -> u64 {
        self.tops.values().map(|t| t.len() as u64).sum()
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("top-n")
    }

    /// Every partition's kept rows in ranking order, and the arrival counter.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let rows: Vec<RecordBatch> = self
            .tops
            .values()
            .flat_map(|t| t.iter().map(|(_, _, r)| r.clone()))
            .collect();
        let metadata = HashMap::from([("arrivals".to_string(), self.arrivals.to_string())]);
        let rows = concat_batches(&self.input, &rows)?;
        Ok(Some(snapshot::encode(&self.input, metadata, &[rows])?))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        let (metadata, batches) = snapshot::decode(bytes)?;
        self.tops.clear();
        let limit = self.limit;
        self.limit = usize::MAX;
        let mut sink = Vec::new();
        for b in batches {
            let b = RecordBatch::try_new(self.input.clone(), b.columns().to_vec())?;
            self.process_batch(b, &mut sink)?;
        }
        self.limit = limit;
        self.arrivals = snapshot::meta(&metadata, "arrivals")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::{Harness, col, lines, schema};

    #[test]
    fn a_row_entering_the_top_moves_the_ranks_below_it() {
        let input = schema("k:str v:i64");
        let mut fields: Vec<arrow::datatypes::Field> =
            input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(arrow::datatypes::Field::new(
            "rn",
            arrow::datatypes::DataType::UInt64,
            false,
        ));
        let output = crate::stream::changelog::with_kinds(&arrow::datatypes::Schema::new(fields));
        let descending = SortOptions {
            descending: true,
            nulls_first: false,
        };
        let new = || {
            UpdatingTopN::new(
                vec![col("k", &input)],
                vec![(col("v", &input), descending)],
                2,
                input.clone(),
                output.clone(),
            )
            .unwrap()
        };
        let mut h = Harness::new(new());
        h.push("k:str v:i64\na 5\na 3\nb 1");
        assert_eq!(h.take(), lines("a 5 1 0\na 3 2 0\nb 1 1 0"));
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = Harness::new(new());
        restored.op.restore(&bytes).unwrap();
        for h in [&mut h, &mut restored] {
            // 4 takes rank 2 (3 leaves); 1 is not in the top.
            h.push("k:str v:i64\na 4\na 1");
            assert_eq!(h.take(), lines("a 3 2 1\na 4 2 2"));
            // 9 takes rank 1: both ranks change.
            h.push("k:str v:i64\na 9");
            assert_eq!(h.take(), lines("a 5 1 1\na 9 1 2\na 4 2 1\na 5 2 2"));
        }
    }
}
