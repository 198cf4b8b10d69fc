//! A query's live results in the shell, as Flink's SQL client shows them in `tableau` mode: a
//! header, then each row as it comes (with its row kind in an `op` column), then the count. The
//! query runs inside the shell and writes nowhere else; Ctrl-C stops it.

use crate::connectors::print::column_formatters;
use crate::jobs::start_preview;
use crate::plan::JobGraph;
use crate::runtime::RuntimeOptions;
use crate::signals::StopSignals;
use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::ipc::reader::StreamDecoder;
use arrow::util::display::FormatOptions;

/// Widest a column is shown by default; longer values end in `...` (Flink's
/// `sql-client.display.max-column-width`).
pub const MAX_WIDTH: usize = 30;

/// Column layout and the rows shown so far.
pub struct Tableau {
    names: Vec<String>,
    widths: Vec<usize>,
    numeric: Vec<bool>,
    pub rows: u64,
}

impl Tableau {
    /// Columns no wider than `max_width` (long values are cut).
    pub fn new(schema: &SchemaRef, max_width: usize) -> Self {
        let fields = schema.fields();
        Tableau {
            names: fields.iter().map(|f| f.name().clone()).collect(),
            widths: fields
                .iter()
                .map(|f| type_width(f.data_type()).max(f.name().len()).min(max_width))
                .collect(),
            numeric: fields.iter().map(|f| f.data_type().is_numeric()).collect(),
            rows: 0,
        }
    }

    fn rule(&self) -> String {
        let mut line = String::from("+----+");
        for w in &self.widths {
            line.push_str(&"-".repeat(w + 2));
            line.push('+');
        }
        line
    }

    fn line(&self, op: &str, values: &[String]) -> String {
        let mut line = format!("| {op:>2} |");
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

    /// The batch's rows, one line each, as inserts (`+I`).
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<String, arrow::error::ArrowError> {
        let options = FormatOptions::new()
            .with_null("<NULL>")
            .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f"));
        let formatters = column_formatters(batch, &options)?;
        let mut out = String::new();
        for row in 0..batch.num_rows() {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push_str(&self.line("+I", &values));
            out.push('\n');
            self.rows += 1;
        }
        Ok(out)
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

/// Runs the query `job` inside the shell and prints its rows as they come, until it ends or
/// Ctrl-C; `print` writes a line.
pub async fn show(
    job: JobGraph,
    options: RuntimeOptions,
    max_width: usize,
    mut print: impl FnMut(&str),
) -> Result<u64, String> {
    let Some(mut preview) = start_preview(job, options) else {
        return Ok(0);
    };
    let mut signals = StopSignals::listen();
    let mut view = Tableau::new(&preview.schema, max_width);
    print(&view.header());
    let mut stopped = false;
    loop {
        tokio::select! {
            batch = preview.rows.recv() => match batch {
                Some(b) => {
                    let text = view.batch(&b).map_err(|e| e.to_string())?;
                    print(text.trim_end_matches('\n'));
                }
                None => break,
            },
            _ = signals.next(), if !stopped => {
                stopped = true;
                let _ = preview.stop.send(true);
            }
        }
    }
    let result = preview.ended.await.map_err(|e| e.to_string())?;
    print(&view.footer());
    if stopped {
        print("Query stopped (Ctrl-C).");
    }
    result.map(|_| view.rows).map_err(|e| e.to_string())
}

/// Shows the rows a server streams back for a query (an Arrow IPC stream), until it ends or
/// Ctrl-C, which closes the connection and so stops the query on the server.
pub async fn show_streamed(
    response: reqwest::Response,
    max_width: usize,
    mut print: impl FnMut(&str),
) -> Result<u64, String> {
    use futures::StreamExt;
    let mut body = response.bytes_stream();
    let mut decoder = StreamDecoder::new();
    let mut view: Option<Tableau> = None;
    let mut signals = StopSignals::listen();
    let mut stopped = false;
    loop {
        let chunk = tokio::select! {
            chunk = body.next() => chunk,
            _ = signals.next() => {
                stopped = true;
                break;
            }
        };
        let Some(chunk) = chunk else { break };
        let mut buffer = Buffer::from(chunk.map_err(|e| e.to_string())?.to_vec());
        while !buffer.is_empty() {
            let batch = decoder.decode(&mut buffer).map_err(|e| e.to_string())?;
            if view.is_none()
                && let Some(schema) = decoder.schema()
            {
                let v = Tableau::new(&schema, max_width);
                print(&v.header());
                view = Some(v);
            }
            if let (Some(batch), Some(v)) = (batch, view.as_mut()) {
                let text = v.batch(&batch).map_err(|e| e.to_string())?;
                print(text.trim_end_matches('\n'));
            }
        }
    }
    let rows = view.as_ref().map_or(0, |v| v.rows);
    if let Some(v) = &view {
        print(&v.footer());
    }
    if stopped {
        print("Query stopped (Ctrl-C).");
    }
    Ok(rows)
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
        let mut view = Tableau::new(&schema, MAX_WIDTH);
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
        let rows = view.batch(&batch).unwrap();
        let lines: Vec<&str> = header.lines().chain(rows.lines()).collect();
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
