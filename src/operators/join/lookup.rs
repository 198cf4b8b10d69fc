//! Lookup join: a stream joined with a bounded table read whole when the job starts (depots
//! and customers, vehicle master data), `INNER` or keeping unmatched stream rows (`LEFT JOIN`
//! with the stream on the left, `RIGHT JOIN` with it on the right).
//!
//! Each stream batch is joined on its own, so the operator is stateless and transparent to event
//! time: the stream's time attribute and watermarks pass through, and windows or
//! MATCH_RECOGNIZE can follow the join (Flink loses the time attribute in a regular join).
//! Equality conditions (`ON s.k = t.k`) probe a hash index of the table's keys built once; any
//! further condition (`AND HAVERSINE_KM(...) * 1000 <= t.radius_m`) is evaluated by DataFusion
//! on the candidate pairs. Without an equality every stream row is paired with every table row
//! first — fine for tables of hundreds of rows, which is what geofence tables are. SQL NULL
//! semantics: a NULL key matches nothing.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, filter, filter_record_batch, take};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::operators::FusedOperators;
use crate::operators::evaluate::{evaluate_all, evaluate_predicate};
use crate::stream::{JobError, Operator};

pub struct LookupJoin {
    /// The table as planned, until [`Operator::open`] reads it.
    side: Option<LookupTable>,
    table_name: String,
    /// The bounded table's rows (after its own filters and projections), once opened.
    table: RecordBatch,
    /// Equality keys: evaluated on stream batches, and (once, when opened) on the table.
    stream_keys: Vec<Arc<dyn PhysicalExpr>>,
    table_keys: Vec<Arc<dyn PhysicalExpr>>,
    converter: Option<RowConverter>,
    /// Table rows by key (row-format bytes); empty when the join has no equality.
    index: HashMap<Box<[u8]>, Vec<u32>>,
    /// The rest of the ON condition, over the joined schema.
    condition: Option<Arc<dyn PhysicalExpr>>,
    keep_unmatched: bool,
    /// Whether the stream's columns come first in the output (the stream was the left input).
    stream_first: bool,
    schema: SchemaRef,
}

/// Reads a bounded table whole, as batches of its scan schema.
/// (Shared: each subtask of a parallel pipeline reads the table for itself.)
pub type LoadTable = Arc<dyn Fn() -> Result<Vec<RecordBatch>, JobError> + Send + Sync>;

/// The lookup side of a join as planned: how to read the table when the job starts, and the
/// ordinary operators (computed columns, filters, projections) its rows then go through.
pub struct LookupTable {
    pub name: String,
    pub load: LoadTable,
    pub operators: Vec<Box<dyn Operator>>,
    /// The rows' schema after the operators.
    pub schema: SchemaRef,
}

/// How a stream meets its lookup table.
pub struct LookupJoinSpec {
    pub table: LookupTable,
    /// (stream key, table key) pairs of the equality conditions.
    pub keys: Vec<(Arc<dyn PhysicalExpr>, Arc<dyn PhysicalExpr>)>,
    pub condition: Option<Arc<dyn PhysicalExpr>>,
    pub keep_unmatched: bool,
    pub stream_first: bool,
    pub schema: SchemaRef,
}

impl LookupJoin {
    pub fn new(spec: LookupJoinSpec) -> Self {
        let (stream_keys, table_keys): (Vec<_>, Vec<_>) = spec.keys.into_iter().unzip();
        LookupJoin {
            table_name: spec.table.name.clone(),
            table: RecordBatch::new_empty(spec.table.schema.clone()),
            side: Some(spec.table),
            stream_keys,
            table_keys,
            converter: None,
            index: HashMap::new(),
            condition: spec.condition,
            keep_unmatched: spec.keep_unmatched,
            stream_first: spec.stream_first,
            schema: spec.schema,
        }
    }

    /// Reads the table, runs its rows through the side's operators and indexes them by key.
    fn load(&mut self, side: LookupTable) -> Result<(), JobError> {
        let mut operators = FusedOperators::new(side.operators);
        let mut rows = Vec::new();
        for batch in (side.load)()? {
            rows.extend(operators.process_batch(batch)?);
        }
        // A bounded table has no event time: the final watermark only flushes stateless steps.
        rows.extend(operators.process_watermark(i64::MAX)?);
        let rows = rows
            .iter()
            .map(|b| RecordBatch::try_new(side.schema.clone(), b.columns().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        self.table = concat_batches(&side.schema, &rows)?;
        let table_key_columns = evaluate_all(&self.table_keys, &self.table)?;
        let converter = RowConverter::new(
            table_key_columns
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
        )?;
        if !table_key_columns.is_empty() {
            let keys = converter.convert_columns(&table_key_columns)?;
            let valid = all_valid(&table_key_columns);
            for i in (0..self.table.num_rows()).filter(|&i| valid(i)) {
                self.index
                    .entry(keys.row(i).as_ref().into())
                    .or_default()
                    .push(i as u32);
            }
        }
        self.converter = Some(converter);
        Ok(())
    }

    /// (stream row, table row) pairs whose keys are equal, in stream-row order.
    fn candidates(&self, batch: &RecordBatch) -> Result<(Vec<u32>, Vec<u32>), JobError> {
        let (mut stream_rows, mut table_rows) = (Vec::new(), Vec::new());
        if self.stream_keys.is_empty() {
            let m = self.table.num_rows() as u32;
            for i in 0..batch.num_rows() as u32 {
                stream_rows.extend(std::iter::repeat_n(i, m as usize));
                table_rows.extend(0..m);
            }
            return Ok((stream_rows, table_rows));
        }
        let converter = self.converter.as_ref().ok_or_else(|| {
            JobError::internal(format!("lookup table `{}` was not read", self.table_name))
        })?;
        let keys = evaluate_all(&self.stream_keys, batch)?;
        let rows: Rows = converter.convert_columns(&keys)?;
        let valid = all_valid(&keys);
        for i in (0..batch.num_rows()).filter(|&i| valid(i)) {
            if let Some(matches) = self.index.get(rows.row(i).as_ref()) {
                stream_rows.extend(std::iter::repeat_n(i as u32, matches.len()));
                table_rows.extend_from_slice(matches);
            }
        }
        Ok((stream_rows, table_rows))
    }

    /// The joined batch for these pairs; a `None` table row gives NULL table columns.
    fn joined(
        &self,
        batch: &RecordBatch,
        stream_rows: &UInt32Array,
        table_rows: &UInt32Array,
    ) -> Result<RecordBatch, JobError> {
        let take_all = |b: &RecordBatch, idx: &UInt32Array| -> Result<Vec<ArrayRef>, JobError> {
            b.columns()
                .iter()
                .map(|c| take(c.as_ref(), idx, None).map_err(JobError::from))
                .collect()
        };
        let stream = take_all(batch, stream_rows)?;
        let table = take_all(&self.table, table_rows)?;
        let columns = if self.stream_first {
            [stream, table].concat()
        } else {
            [table, stream].concat()
        };
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Whether row `i` has no NULL among `columns`.
fn all_valid(columns: &[ArrayRef]) -> impl Fn(usize) -> bool + '_ {
    move |i| columns.iter().all(|c| c.is_valid(i))
}

impl Operator for LookupJoin {
    /// The stream's columns come out unchanged.
    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        let table = self.table.num_columns();
        let stream = self.schema.fields().len() - table;
        match self.stream_first {
            true => (column < stream).then_some(column),
            false => column.checked_sub(table),
        }
    }

    /// Before it is opened: the instance reads the table for itself.
    fn instance(&self, watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        let side = self.side.as_ref()?;
        let operators = side.operators.iter().map(|op| op.instance(watermark));
        Some(Box::new(LookupJoin::new(LookupJoinSpec {
            table: LookupTable {
                name: side.name.clone(),
                load: side.load.clone(),
                operators: operators.collect::<Option<_>>()?,
                schema: side.schema.clone(),
            },
            keys: self
                .stream_keys
                .iter()
                .cloned()
                .zip(self.table_keys.iter().cloned())
                .collect(),
            condition: self.condition.clone(),
            keep_unmatched: self.keep_unmatched,
            stream_first: self.stream_first,
            schema: self.schema.clone(),
        })))
    }

    fn describe(&self) -> String {
        let side = match &self.side {
            Some(side) if !side.operators.is_empty() => {
                let steps: Vec<String> = side.operators.iter().map(|o| o.describe()).collect();
                format!(" read at start, then {}", steps.join(" → "))
            }
            Some(_) => " read at start".to_string(),
            None => format!(" {} rows", self.table.num_rows()),
        };
        format!(
            "LookupJoin[{} `{}`{side}, {}]",
            if self.keep_unmatched {
                "keeping unmatched rows,"
            } else {
                "inner,"
            },
            self.table_name,
            if self.stream_keys.is_empty() {
                "every pair tested".to_string()
            } else {
                format!("{} equality key(s)", self.stream_keys.len())
            }
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn open(&mut self) -> Result<(), JobError> {
        match self.side.take() {
            Some(side) => self.load(side).map_err(|e| match e {
                JobError::BadRecord { .. } | JobError::Source { .. } => e,
                other => JobError::source(
                    &self.table_name,
                    format!("reading the lookup table: {other}"),
                ),
            }),
            None => Ok(()),
        }
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let (stream_rows, table_rows) = self.candidates(&batch)?;
        let (mut stream_rows, mut table_rows) = (
            UInt32Array::from(stream_rows),
            UInt32Array::from(table_rows),
        );
        if let Some(condition) = &self.condition {
            let pairs = self.joined(&batch, &stream_rows, &table_rows)?;
            // A NULL condition is not true: arrow's filters drop those pairs.
            let keep = &evaluate_predicate(condition, &pairs)?;
            if !self.keep_unmatched {
                let joined = filter_record_batch(&pairs, keep)?;
                if joined.num_rows() > 0 {
                    out.push(joined);
                }
                return Ok(());
            }
            stream_rows = downcast_u32(filter(&stream_rows, keep)?);
            table_rows = downcast_u32(filter(&table_rows, keep)?);
        }
        if self.keep_unmatched {
            // Every stream row at least once, in stream order: matched rows with their table
            // rows, the others with a NULL table row.
            let mut matched = vec![false; batch.num_rows()];
            for &i in stream_rows.values() {
                matched[i as usize] = true;
            }
            let (mut all_stream, mut all_table) = (Vec::new(), Vec::new());
            let mut k = 0;
            for (i, was_matched) in matched.iter().enumerate() {
                if !was_matched {
                    all_stream.push(i as u32);
                    all_table.push(None);
                }
                while k < stream_rows.len() && stream_rows.value(k) as usize == i {
                    all_stream.push(i as u32);
                    all_table.push(Some(table_rows.value(k)));
                    k += 1;
                }
            }
            stream_rows = UInt32Array::from(all_stream);
            table_rows = UInt32Array::from(all_table);
        }
        let joined = self.joined(&batch, &stream_rows, &table_rows)?;
        if joined.num_rows() > 0 {
            out.push(joined);
        }
        Ok(())
    }
}

fn downcast_u32(array: ArrayRef) -> UInt32Array {
    array
        .as_any()
        .downcast_ref::<UInt32Array>()
        .expect("filtering a UInt32Array gives a UInt32Array")
        .clone()
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::Operator as BinaryOp;
    use datafusion::physical_expr::expressions::{BinaryExpr, lit};

    use super::*;
    use crate::operators::Filter;
    use crate::operators::testing::{Harness, col, format, lines, rows, schema};

    /// `r JOIN depots d ON r.depot = d.id [AND condition]`: readings `v, depot` and depots
    /// `id, city, open`, the table read by `load` and passed through `operators` at open.
    fn depots_join(
        load: LoadTable,
        operators: Vec<Box<dyn Operator>>,
        condition: Option<Arc<dyn PhysicalExpr>>,
        keep_unmatched: bool,
    ) -> LookupJoin {
        let stream = schema("v:str depot:str");
        let table = schema("id:str city:str open:bool");
        LookupJoin::new(LookupJoinSpec {
            table: LookupTable {
                name: "depots".into(),
                load,
                operators,
                schema: table.clone(),
            },
            keys: vec![(col("depot", &stream), col("id", &table))],
            condition,
            keep_unmatched,
            stream_first: true,
            schema: schema("v:str depot:str id:str city:str open:bool"),
        })
    }

    /// `SELECT * FROM r [LEFT] JOIN depots d ON r.depot = d.id` where the depots file is read
    /// when the job starts and only open depots (`d.open`) are kept.
    fn join_depots(keep_unmatched: bool) -> Harness<LookupJoin> {
        let table = schema("id:str city:str open:bool");
        let only_open = Filter::new(col("open", &table), table);
        let load: LoadTable = Arc::new(|| {
            Ok(vec![rows(
                "id:str city:str open:bool
                 d1     Hamburg  true
                 d2     Bremen   true
                 d2     Kiel     true
                 d3     Lübeck   false",
            )])
        });
        let mut op = depots_join(load, vec![Box::new(only_open)], None, keep_unmatched);
        op.open().expect("the table loads");
        Harness::new(op)
    }

    const READINGS: &str = "v:str depot:str
                            v1    d1
                            v2    d2
                            v3    d3
                            v4    null";

    #[test]
    fn inner_join_pairs_each_row_with_every_match() {
        let mut h = join_depots(false);
        h.push(READINGS);
        assert_eq!(
            h.take(),
            lines(
                "v1 d1 d1 Hamburg true
                 v2 d2 d2 Bremen true
                 v2 d2 d2 Kiel true"
            )
        );
    }

    #[test]
    fn left_join_keeps_unmatched_rows_with_nulls_in_stream_order() {
        // d3 is filtered out of the table; a NULL key matches nothing.
        let mut h = join_depots(true);
        h.push(READINGS);
        assert_eq!(
            h.take(),
            lines(
                "v1 d1 d1 Hamburg true
                 v2 d2 d2 Bremen true
                 v2 d2 d2 Kiel true
                 v3 d3 null null null
                 v4 null null null null"
            )
        );
    }

    #[test]
    fn a_further_condition_is_evaluated_on_candidate_pairs() {
        // ON r.depot = d.id AND d.city <> 'Kiel'
        let output = schema("v:str depot:str id:str city:str open:bool");
        let not_kiel: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            col("city", &output),
            BinaryOp::NotEq,
            lit("Kiel"),
        ));
        let load: LoadTable = Arc::new(|| {
            Ok(vec![rows(
                "id:str city:str open:bool\n d2 Bremen true\n d2 Kiel true",
            )])
        });
        let mut op = depots_join(load, Vec::new(), Some(not_kiel), false);
        assert!(op.describe().contains("read at start"), "{}", op.describe());
        op.open().unwrap();
        let mut h = Harness::new(op);
        h.push("v:str depot:str\n v2 d2");
        assert_eq!(h.take(), lines("v2 d2 d2 Bremen true"));
    }

    #[test]
    fn a_table_that_cannot_be_read_fails_when_the_job_starts_naming_it() {
        let load: LoadTable =
            Arc::new(|| Err(JobError::source("depots", "no files match /nowhere/*.json")));
        let err = depots_join(load, Vec::new(), None, false)
            .open()
            .unwrap_err()
            .to_string();
        assert!(err.contains("depots") && err.contains("/nowhere"), "{err}");
    }

    #[test]
    fn an_instance_for_another_subtask_reads_the_table_itself_and_joins_alike() {
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = reads.clone();
        let load: LoadTable = Arc::new(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(vec![rows(
                "id:str city:str open:bool\n d1 Hamburg true\n d2 Bremen true",
            )])
        });
        let template = depots_join(load, Vec::new(), None, false);
        // Rows are routed by the stream's columns, which the join passes on unchanged.
        assert_eq!(
            (template.forwards(0, 1), template.forwards(0, 2)),
            (Some(1), None)
        );
        let cell = crate::stream::new_watermark_cell();
        let mut copies: Vec<Box<dyn Operator>> = (0..2)
            .map(|_| {
                template
                    .instance(&cell)
                    .expect("a lookup join runs as subtasks")
            })
            .collect();
        for (copy, (input, joined)) in copies.iter_mut().zip([
            ("v1 d2", "v1 d2 d2 Bremen true"),
            ("v2 d1", "v2 d1 d1 Hamburg true"),
        ]) {
            copy.open().unwrap();
            let mut out = Vec::new();
            let batch = rows(&format!("v:str depot:str\n {input}\n v3 d9"));
            copy.process_batch(batch, &mut out).unwrap();
            assert_eq!(format(&out), lines(joined));
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
