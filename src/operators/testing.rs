//! Driving an operator in-process: batches written as small text tables, watermarks, and the
//! rows that come out compared as text — so an operator's test reads like its semantics.
//!
//! ```text
//! k:str  ts:ts     v:i64        a header of name:type, then one row per line
//! a      00:00:01  1            ts values are times on 2024-01-01 (or full timestamps)
//! b      00:00:09  null         `null` is NULL
//! ```
//! Types: `str`, `i64`, `f64`, `bool`, `ts` (TIMESTAMP(3)), `op` (a row kind written `+I`, `-U`,
//! `+U`, `-D`: name the column `__op` to make the batch a changelog).

use std::sync::Arc;

use arrow::array::TimestampMillisecondArray;
use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;

use crate::stream::Operator;
use crate::stream::changelog::{RowKind, kinds_column};

/// The batch a text table describes.
pub fn rows(text: &str) -> RecordBatch {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let header = lines.next().expect("a header line");
    let fields: Vec<Field> = header
        .split_whitespace()
        .map(|col| {
            let (name, ty) = col.split_once(':').expect("columns as name:type");
            Field::new(name, data_type(ty), true)
        })
        .collect();
    let cells: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let columns = fields
        .iter()
        .enumerate()
        .map(|(i, f)| column(f.data_type(), cells.iter().map(|r| r[i])))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("a well-formed table")
}

/// Milliseconds of `HH:MM:SS[.mmm]` on 2024-01-01, or of a full `yyyy-MM-ddTHH:MM:SS`.
pub fn ms(text: &str) -> i64 {
    let full = if text.len() <= 12 {
        format!("2024-01-01T{text}")
    } else {
        text.replace(' ', "T")
    };
    chrono::NaiveDateTime::parse_from_str(&full, "%Y-%m-%dT%H:%M:%S%.f")
        .expect("a timestamp")
        .and_utc()
        .timestamp_millis()
}

fn data_type(name: &str) -> DataType {
    match name {
        "str" => DataType::Utf8,
        "i64" => DataType::Int64,
        "f64" => DataType::Float64,
        "bool" => DataType::Boolean,
        "ts" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "op" => DataType::Int8,
        other => panic!("unknown test type {other}"),
    }
}

fn column<'a>(ty: &DataType, cells: impl Iterator<Item = &'a str>) -> ArrayRef {
    let cells: Vec<Option<&str>> = cells.map(|c| (c != "null").then_some(c)).collect();
    let parse = |c: &str| -> f64 { c.parse().expect("a number") };
    match ty {
        DataType::Utf8 => Arc::new(StringArray::from(cells)),
        DataType::Int64 => Arc::new(Int64Array::from_iter(
            cells.iter().map(|c| c.map(|c| parse(c) as i64)),
        )),
        DataType::Float64 => Arc::new(Float64Array::from_iter(cells.iter().map(|c| c.map(parse)))),
        DataType::Boolean => Arc::new(BooleanArray::from_iter(
            cells.iter().map(|c| c.map(|c| c == "true")),
        )),
        DataType::Int8 => {
            let kind = |c: &str| match c {
                "+I" => RowKind::Insert,
                "-U" => RowKind::UpdateBefore,
                "+U" => RowKind::UpdateAfter,
                "-D" => RowKind::Delete,
                other => panic!("unknown row kind {other}"),
            };
            kinds_column(cells.iter().map(|c| kind(c.expect("a row kind"))))
        }
        _ => Arc::new(TimestampMillisecondArray::from_iter(
            cells.iter().map(|c| c.map(ms)),
        )),
    }
}

/// Rows as text lines, cells separated by single spaces (timestamps as `HH:MM:SS` when on
/// 2024-01-01, else as `yyyy-MM-ddTHH:MM:SS`), in output order.
pub fn format(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::new()
        .with_null("null")
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3f"));
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("a displayable column"))
            .collect();
        for row in 0..b.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| {
                    let cell = f.value(row).to_string();
                    let cell = cell
                        .strip_prefix("2024-01-01T")
                        .unwrap_or(&cell)
                        .to_string();
                    cell.strip_suffix(".000")
                        .map(str::to_string)
                        .unwrap_or(cell)
                })
                .collect();
            out.push(cells.join(" "));
        }
    }
    out
}

/// The lines of an expected table, whitespace-normalized, for comparing with [`format`].
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// A column reference into `schema`, by name.
pub fn col(name: &str, schema: &SchemaRef) -> Arc<dyn PhysicalExpr> {
    Arc::new(Column::new(name, schema.index_of(name).expect("a column")))
}

/// An operator under test and everything it has emitted.
pub struct Harness<O: Operator> {
    pub op: O,
    out: Vec<RecordBatch>,
}

impl<O: Operator> Harness<O> {
    pub fn new(op: O) -> Self {
        Harness {
            op,
            out: Vec::new(),
        }
    }

    /// Feeds a batch written as a text table.
    pub fn push(&mut self, table: &str) -> &mut Self {
        self.push_batch(rows(table))
    }

    /// Feeds a batch as it is.
    pub fn push_batch(&mut self, batch: RecordBatch) -> &mut Self {
        self.op
            .process_batch(batch, &mut self.out)
            .expect("the batch is processed");
        self
    }

    /// What was emitted since the last call, as batches (to feed another operator).
    pub fn take_batches(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.out)
    }

    /// Feeds a batch to the operator's `input`-th feed (a join's side).
    pub fn push_to(&mut self, input: usize, table: &str) -> &mut Self {
        let batch = rows(table);
        self.op
            .process_input(input, batch, &mut self.out)
            .expect("the batch is processed");
        self
    }

    /// Advances event time to `HH:MM:SS` (or `+inf`).
    pub fn watermark(&mut self, at: &str) -> &mut Self {
        let w = if at == "+inf" { i64::MAX } else { ms(at) };
        self.op
            .process_watermark(w, &mut self.out)
            .expect("the watermark is processed");
        self
    }

    /// What was emitted since the last call, as [`format`]ted lines.
    pub fn take(&mut self) -> Vec<String> {
        format(&std::mem::take(&mut self.out))
    }

    /// What was emitted since the last call, lines sorted (for operators whose order within a
    /// watermark is not part of their contract).
    pub fn take_sorted(&mut self) -> Vec<String> {
        let mut lines = self.take();
        lines.sort();
        lines
    }
}

/// An aggregate call of `function` over `args` of `schema`, named `name`.
pub fn call(
    function: Arc<datafusion::logical_expr::AggregateUDF>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    schema: &SchemaRef,
    name: &str,
) -> crate::operators::aggregate::AggregateCall {
    let function = datafusion::physical_expr::aggregate::AggregateExprBuilder::new(function, args)
        .schema(schema.clone())
        .alias(name)
        .build()
        .expect("a valid aggregate");
    crate::operators::aggregate::AggregateCall {
        function: Arc::new(function),
        filter: None,
        label: name.to_string(),
    }
}

/// A schema of `name:type` columns, as in a text table's header.
pub fn schema(header: &str) -> SchemaRef {
    rows(header).schema()
}
