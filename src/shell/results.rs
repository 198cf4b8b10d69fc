//! A query's live results in the shell, as Flink's SQL client shows them in `tableau` mode: a
//! header, then each row as it comes (with its row kind in an `op` column), then the count. The
//! query runs inside the shell and writes nowhere else; Ctrl-C stops it.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::connectors::print::column_formatters;
use crate::jobs::{Preview, start_preview};
use crate::plan::JobGraph;
use crate::runtime::RuntimeOptions;
use crate::signals::StopSignals;
use crate::stream::changelog::{RowKind, is_changelog, row_kinds, without_kinds};
use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::ipc::reader::StreamDecoder;
use arrow::util::display::FormatOptions;

/// Column layout and the rows shown so far.
pub struct Tableau {
    names: Vec<String>,
    widths: Vec<usize>,
    numeric: Vec<bool>,
    /// Whether rows carry their kind in an `op` column (a changelog; not a materialized table).
    op: bool,
    pub rows: u64,
}

impl Tableau {
    /// Columns no wider than `max_width` (long values are cut).
    pub fn new(schema: &SchemaRef, max_width: usize) -> Self {
        // A changelog's row kind is the `op` column, not a column of its own.
        let fields = schema.fields();
        let fields = match is_changelog(schema) {
            true => &fields[..fields.len() - 1],
            false => &fields[..],
        };
        Tableau {
            names: fields.iter().map(|f| f.name().clone()).collect(),
            widths: fields
                .iter()
                .map(|f| type_width(f.data_type()).max(f.name().len()).min(max_width))
                .collect(),
            numeric: fields.iter().map(|f| f.data_type().is_numeric()).collect(),
            op: true,
            rows: 0,
        }
    }

    /// The same columns without the `op` column: the rows of a table, not changes.
    pub fn without_op(mut self) -> Self {
        self.op = false;
        self
    }

    fn rule(&self) -> String {
        let mut line = String::from(if self.op { "+----+" } else { "+" });
        for w in &self.widths {
            line.push_str(&"-".repeat(w + 2));
            line.push('+');
        }
        line
    }

    fn line(&self, op: &str, values: &[String]) -> String {
        let mut line = if self.op {
            format!("| {op:>2} |")
        } else {
            "|".to_string()
        };
        for ((v, w), numeric) in values.iter().zip(&self.widths).zip(&self.numeric) {
            let v = fit(v, *w);
            if *numeric {
                line.push_str(&format!(" {v:>w$} |"));
            } else {
                line.push_str(&format!(" {v:<w$} |"));
            }
        }
        line
    }

    pub fn header(&self) -> String {
        let rule = self.rule();
        format!("{rule}\n{}\n{rule}", self.line("op", &self.names))
    }

    /// The batch's rows, one line each, with their kinds (`+I` for every row of an append-only
    /// result).
    pub fn lines(
        &mut self,
        batch: &RecordBatch,
    ) -> Result<Vec<(RowKind, String)>, arrow::error::ArrowError> {
        let options = FormatOptions::new()
            .with_null("<NULL>")
            .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f"));
        let kinds = row_kinds(batch);
        let values = without_kinds(batch);
        let formatters = column_formatters(&values, &options)?;
        let lines = kinds.into_iter().enumerate().map(|(row, kind)| {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            (kind, self.line(kind.symbol(), &values))
        });
        let lines: Vec<(RowKind, String)> = lines.collect();
        self.rows += lines.len() as u64;
        Ok(lines)
    }

    pub fn footer(&self) -> String {
        format!("{}\nReceived a total of {} rows", self.rule(), self.rows)
    }
}

/// How wide a value of `t` can be when shown.
fn type_width(t: &DataType) -> usize {
    match t {
        DataType::Boolean => 5,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt32 => 11,
        DataType::Int64 | DataType::UInt64 => 20,
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => 12,
        DataType::Date32 | DataType::Date64 => 10,
        DataType::Timestamp(..) => 23,
        _ => usize::MAX,
    }
}

fn fit(value: &str, width: usize) -> String {
    if value.chars().count() <= width {
        value.to_string()
    } else {
        let kept: String = value.chars().take(width.saturating_sub(3)).collect();
        format!("{kept}...")
    }
}

/// Where a query's rows come from: the query runs inside the shell, or a server runs it and
/// streams its rows back (Arrow IPC).
pub enum Rows {
    Local(Preview),
    Streamed {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        decoder: StreamDecoder,
        buffer: Buffer,
    },
}

impl Rows {
    /// Starts `job` (a planned `SELECT`) here; `None` when it has no result to show.
    pub fn local(job: JobGraph, options: RuntimeOptions) -> Option<Rows> {
        start_preview(job, options).map(Rows::Local)
    }

    /// The rows of a server's `/v1/preview` response.
    pub fn streamed(response: reqwest::Response) -> Rows {
        Rows::Streamed {
            body: response.bytes_stream().boxed(),
            decoder: StreamDecoder::new(),
            buffer: Buffer::from(Vec::<u8>::new()),
        }
    }

    /// The result's columns, once known (a stream's come with its first message).
    pub fn schema(&self) -> Option<SchemaRef> {
        match self {
            Rows::Local(p) => Some(p.schema.clone()),
            Rows::Streamed { decoder, .. } => decoder.schema(),
        }
    }

    /// The next batch of rows; `None` when the query has ended (or was stopped).
    pub async fn next(&mut self) -> Result<Option<RecordBatch>, String> {
        match self {
            Rows::Local(p) => Ok(p.rows.recv().await),
            Rows::Streamed {
                body,
                decoder,
                buffer,
            } => loop {
                if !buffer.is_empty() {
                    if let Some(batch) = decoder.decode(buffer).map_err(|e| e.to_string())? {
                        return Ok(Some(batch));
                    }
                    continue;
                }
                match body.next().await {
                    Some(chunk) => {
                        *buffer = Buffer::from(chunk.map_err(|e| e.to_string())?.to_vec())
                    }
                    None => return Ok(None),
                }
            },
        }
    }

    /// Stops the query: here by its stop signal (rows on their way still come), on a server by
    /// closing the connection.
    pub fn stop(&mut self) {
        match self {
            Rows::Local(p) => {
                let _ = p.stop.send(true);
            }
            Rows::Streamed { body, .. } => *body = futures::stream::empty().boxed(),
        }
    }

    /// Waits for the query's end; its error if it failed.
    pub async fn finish(self) -> Result<(), String> {
        match self {
            Rows::Local(p) => p
                .ended
                .await
                .map_err(|e| e.to_string())?
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Rows::Streamed { .. } => Ok(()),
        }
    }
}

/// Prints the rows as they come (Flink's `tableau` and `changelog` modes), until the query
/// ends or Ctrl-C stops it; `print` writes a line. The number of rows.
pub async fn show_tableau(
    mut rows: Rows,
    max_width: usize,
    mut print: impl FnMut(&str),
) -> Result<u64, String> {
    let mut signals = StopSignals::listen();
    let mut view: Option<Tableau> = None;
    let mut stopped = false;
    loop {
        // A stream's columns are known with its first message: maybe only with the first rows.
        if view.is_none()
            && let Some(schema) = rows.schema()
        {
            let v = Tableau::new(&schema, max_width);
            print(&v.header());
            view = Some(v);
        }
        let batch = tokio::select! {
            batch = rows.next() => batch?,
            _ = signals.next(), if !stopped => {
                stopped = true;
                rows.stop();
                continue;
            }
        };
        let Some(batch) = batch else { break };
        let v = view.get_or_insert_with(|| {
            let v = Tableau::new(&batch.schema(), max_width);
            print(&v.header());
            v
        });
        let lines = v.lines(&batch).map_err(|e| e.to_string())?;
        let text: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
        print(&text.join("\n"));
    }
    let result = rows.finish().await;
    let count = view.as_ref().map_or(0, |v| v.rows);
    if let Some(v) = &view {
        print(&v.footer());
    }
    if stopped {
        print("Query stopped (Ctrl-C).");
    }
    result.map(|()| count)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn rows_line_up_under_their_header() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("vehicle_id", DataType::Utf8, false),
            Field::new("speed", DataType::Float64, true),
        ]));
        let mut view = Tableau::new(&schema, 30);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    "V0001",
                    "a name much longer than thirty chars",
                ])),
                Arc::new(Float64Array::from(vec![Some(92.5), None])),
            ],
        )
        .unwrap();
        let header = view.header();
        let rows = view.lines(&batch).unwrap();
        let lines: Vec<&str> = header
            .lines()
            .chain(rows.iter().map(|(_, l)| l.as_str()))
            .collect();
        assert!(
            lines.iter().all(|l| l.len() == lines[0].len()),
            "{lines:#?}"
        );
        assert!(lines[1].starts_with("| op | vehicle_id"), "{}", lines[1]);
        assert!(lines[3].starts_with("| +I | V0001 "), "{}", lines[3]);
        assert!(lines[3].ends_with(" 92.5 |"), "{}", lines[3]);
        assert!(
            lines[4].contains("a name much longer than thi..."),
            "{}",
            lines[4]
        );
        assert!(lines[4].ends_with(" <NULL> |"), "{}", lines[4]);
        assert_eq!(
            view.footer().lines().last(),
            Some("Received a total of 2 rows")
        );
    }
}
