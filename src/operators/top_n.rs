//! Top-N outside windows: `ROW_NUMBER() OVER (PARTITION BY keys ORDER BY …) <= N`, as Flink's.
//! Each partition keeps its rows in ranking order (ties in arrival order); a batch's rows enter
//! (and, from a changelog input — say the counts of an updating aggregate — `-U`/`-D` rows leave)
//! and each rank whose row changed emits: `-U` the old row with that rank and `+U` the new, `+I`
//! for a rank filled the first time, `-D` for a rank no row holds any more. So the result is a
//! changelog whose current state is the top N with their ranks.
//! The state is N rows per partition over an append-only input; over a changelog every live row
//! of the partition (a row leaving the top N is replaced by the next one).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::{SortOptions, concat_batches};
use arrow::datatypes::SchemaRef;
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::operators::evaluate::{Keys, evaluate_all};
use crate::operators::snapshot;
use crate::stream::changelog::{RowKind, kinds_column, row_kinds, without_kinds};
use crate::stream::{JobError, Operator};

pub struct UpdatingTopN {
    partition: Keys,
    order: Vec<Arc<dyn PhysicalExpr>>,
    /// ORDER BY values as rows that compare in ranking order.
    ranking: RowConverter,
    /// What `ranking` was built from (a converter is not `Clone`).
    ranking_fields: Vec<SortField>,
    limit: usize,
    /// Whole rows as comparable values, to find the row a retraction takes back; `Some` when
    /// the input is a changelog.
    retractions: Option<RowConverter>,
    /// The input's columns (without a row kind): the rows kept.
    input: SchemaRef,
    /// The input's columns, the rank and the row kind.
    schema: SchemaRef,
    /// Per partition, its rows in ranking order.
    tops: HashMap<OwnedRow, Vec<Ranked>>,
    arrivals: u64,
}

/// A partition's top N as they stood: each rank's arrival and row.
type Standing = Vec<(u64, RecordBatch)>;

struct Ranked {
    /// The ORDER BY values.
    key: OwnedRow,
    /// Tells rows apart and orders ties.
    arrival: u64,
    row: RecordBatch,
    /// The whole row, when retractions must find it.
    whole: Option<OwnedRow>,
}

impl UpdatingTopN {
    /// `input` is the input's columns without a row kind; `changelog` says whether its batches
    /// carry one.
    pub fn new(
        partition: Vec<Arc<dyn PhysicalExpr>>,
        order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
        limit: usize,
        input: SchemaRef,
        changelog: bool,
        output: SchemaRef,
    ) -> Result<Self, JobError> {
        let partition = Keys::new(partition, &input)?;
        let fields = order
            .iter()
            .map(|(e, o)| Ok(SortField::new_with_options(e.data_type(&input)?, *o)))
            .collect::<Result<Vec<_>, JobError>>()?;
        let retractions = if changelog {
            let fields = input
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            Some(RowConverter::new(fields)?)
        } else {
            None
        };
        Ok(UpdatingTopN {
            partition,
            order: order.into_iter().map(|(e, _)| e).collect(),
            ranking: RowConverter::new(fields.clone())?,
            ranking_fields: fields,
            limit: limit.max(1),
            retractions,
            input,
            schema: output,
            tops: HashMap::new(),
            arrivals: 0,
        })
    }

    /// How many rows a partition keeps: every live one over a changelog, else the top N.
    fn kept(&self) -> usize {
        if self.retractions.is_some() {
            usize::MAX
        } else {
            self.limit
        }
    }

    /// Applies `rows` (input columns, no row kind) with their kinds; returns each touched
    /// partition's top N (arrival and row) as it was before, in order of first touch.
    fn apply(
        &mut self,
        rows: &RecordBatch,
        kinds: &[RowKind],
    ) -> Result<Vec<(OwnedRow, Standing)>, JobError> {
        let parts = self.partition.rows(rows)?;
        let ranks = self
            .ranking
            .convert_columns(&evaluate_all(&self.order, rows)?)?;
        let wholes = match &self.retractions {
            Some(c) => Some(c.convert_columns(rows.columns())?),
            None => None,
        };
        let (limit, kept) = (self.limit, self.kept());
        let mut before: Vec<(OwnedRow, Standing)> = Vec::new();
        let mut seen: HashSet<OwnedRow> = HashSet::new();
        for (i, kind) in kinds.iter().enumerate() {
            let part = parts.row(i).owned();
            let top = self.tops.entry(part.clone()).or_default();
            if seen.insert(part.clone()) {
                let ranked = top
                    .iter()
                    .take(limit)
                    .map(|r| (r.arrival, r.row.clone()))
                    .collect();
                before.push((part.clone(), ranked));
            }
            let key = ranks.row(i);
            let whole = wholes.as_ref().map(|w| w.row(i));
            if kind.is_retraction() {
                // The row itself, among those ranked the same; none when its key was forgotten.
                let from = top.partition_point(|r| r.key.row() < key);
                let found = top[from..]
                    .iter()
                    .take_while(|r| r.key.row() == key)
                    .position(|r| r.whole.as_ref().map(OwnedRow::row) == whole);
                if let Some(at) = found {
                    top.remove(from + at);
                }
                if top.is_empty() {
                    self.tops.remove(&part);
                }
                continue;
            }
            // After the rows ranked the same or higher: ties keep arrival order.
            let at = top.partition_point(|r| r.key.row() <= key);
            if at >= kept {
                continue;
            }
            self.arrivals += 1;
            top.insert(
                at,
                Ranked {
                    key: key.owned(),
                    arrival: self.arrivals,
                    row: rows.slice(i, 1),
                    whole: whole.map(|w| w.owned()),
                },
            );
            top.truncate(kept);
        }
        Ok(before)
    }
}

impl Operator for UpdatingTopN {
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        Some(self.partition.input_columns())
    }

    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        (column < self.input.fields().len()).then_some(column)
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        let whole_rows = |input: &SchemaRef| {
            let fields = input.fields().iter();
            RowConverter::new(
                fields
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )
        };
        Some(Box::new(UpdatingTopN {
            partition: self.partition.clone(),
            order: self.order.clone(),
            ranking: RowConverter::new(self.ranking_fields.clone()).ok()?,
            ranking_fields: self.ranking_fields.clone(),
            limit: self.limit,
            retractions: match self.retractions {
                Some(_) => Some(whole_rows(&self.input).ok()?),
                None => None,
            },
            input: self.input.clone(),
            schema: self.schema.clone(),
            tops: HashMap::new(),
            arrivals: 0,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "Top-{} per {} partition column(s), ranked by {} key(s) (updating{})",
            self.limit,
            self.partition.len(),
            self.order.len(),
            if self.retractions.is_some() {
                ", over a changelog"
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
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let kinds = row_kinds(&batch);
        let before = self.apply(&without_kinds(&batch), &kinds)?;
        // Per rank whose row changed: -U the row that had it and +U the new one (+I for a rank
        // new, -D for a rank gone).
        let mut rows: Vec<RecordBatch> = Vec::new();
        let mut kinds = Vec::new();
        let mut numbers: Vec<u64> = Vec::new();
        let empty = Vec::new();
        for (part, old) in before {
            let new = self.tops.get(&part).unwrap_or(&empty);
            let ranks = old.len().max(new.len().min(self.limit));
            for rank in 0..ranks {
                let number = rank as u64 + 1;
                match (old.get(rank), new.get(rank).filter(|_| rank < self.limit)) {
                    (Some((was, _)), Some(now)) if *was == now.arrival => {}
                    (Some((_, gone)), Some(now)) => {
                        rows.extend([gone.clone(), now.row.clone()]);
                        kinds.extend([RowKind::UpdateBefore, RowKind::UpdateAfter]);
                        numbers.extend([number, number]);
                    }
                    (None, Some(now)) => {
                        rows.push(now.row.clone());
                        kinds.push(RowKind::Insert);
                        numbers.push(number);
                    }
                    (Some((_, gone)), None) => {
                        rows.push(gone.clone());
                        kinds.push(RowKind::Delete);
                        numbers.push(number);
                    }
                    (None, None) => {}
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
            .flat_map(|t| t.iter().map(|r| r.row.clone()))
            .collect();
        let mut metadata = HashMap::from([("arrivals".to_string(), self.arrivals.to_string())]);
        metadata.extend(snapshot::keyed_rows(0, &self.input));
        let rows = concat_batches(&self.input, &rows)?;
        Ok(Some(snapshot::encode(&self.input, metadata, &[rows])?))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        let (metadata, batches) = snapshot::decode(bytes)?;
        self.tops.clear();
        for b in batches {
            let b = RecordBatch::try_new(self.input.clone(), b.columns().to_vec())?;
            self.apply(&b, &vec![RowKind::Insert; b.num_rows()])?;
        }
        self.arrivals = snapshot::meta(&metadata, "arrivals")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::{Harness, col, lines, schema};

    /// Top-2 per `k` by `v` descending, over rows `k:str v:i64` (a changelog of them when
    /// `changelog`), output `k v rn op`.
    fn top_two(partitioned: bool, changelog: bool) -> UpdatingTopN {
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
        let partition = if partitioned {
            vec![col("k", &input)]
        } else {
            Vec::new()
        };
        UpdatingTopN::new(
            partition,
            vec![(col("v", &input), descending)],
            2,
            input.clone(),
            changelog,
            output,
        )
        .unwrap()
    }

    #[test]
    fn a_row_entering_the_top_moves_the_ranks_below_it() {
        let mut h = Harness::new(top_two(true, false));
        h.push("k:str v:i64\na 5\na 3\nb 1");
        assert_eq!(h.take(), lines("a 5 1 0\na 3 2 0\nb 1 1 0"));
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = Harness::new(top_two(true, false));
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

    #[test]
    fn over_a_changelog_a_row_taken_back_makes_room_for_the_next() {
        // Counts per driver, say: the top 2 of all.
        let mut h = Harness::new(top_two(false, true));
        h.push("k:str v:i64 __op:op\na 5 +I\nb 3 +I\nc 1 +I");
        assert_eq!(h.take(), lines("a 5 1 0\nb 3 2 0"));
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = Harness::new(top_two(false, true));
        restored.op.restore(&bytes).unwrap();
        for h in [&mut h, &mut restored] {
            // a falls to 0: b moves up, c (kept though outside the top) comes in.
            h.push("k:str v:i64 __op:op\na 5 -U\na 0 +U");
            assert_eq!(h.take(), lines("a 5 1 1\nb 3 1 2\nb 3 2 1\nc 1 2 2"));
            // b deleted: c up, a in.
            h.push("k:str v:i64 __op:op\nb 3 -D");
            assert_eq!(h.take(), lines("b 3 1 1\nc 1 1 2\nc 1 2 1\na 0 2 2"));
            // Fewer rows than ranks: the rank no row holds is deleted.
            h.push("k:str v:i64 __op:op\nc 1 -D");
            assert_eq!(h.take(), lines("c 1 1 1\na 0 1 2\na 0 2 3"));
            // A retraction of a row never seen changes nothing.
            h.push("k:str v:i64 __op:op\nz 9 -D");
            assert_eq!(h.take(), Vec::<String>::new());
        }
    }
}
