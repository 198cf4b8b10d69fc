//! `print`: rows to standard output (or error) the way Flink's print connector shows them:
//! `identifier> +I[V0001, 2024-03-01T08:01:43.639, 122.16]`.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;

use crate::options::OptionError;
use crate::options::OptionReader;
use crate::stream::changelog::{row_kinds, without_kinds};
use crate::stream::{JobError, Sink};

#[derive(Debug, Clone, Default)]
pub struct PrintConfig {
    pub identifier: Option<String>,
    pub standard_error: bool,
}

/// The options `from_options` reads, with their choices (for the shell's completion).
pub const OPTIONS: &[(&str, &[&str])] = &[
    ("print-identifier", &[]),
    ("standard-error", &["true", "false"]),
    ("sink.parallelism", &["1"]),
];

impl PrintConfig {
    pub fn from_options(opts: &OptionReader) -> Result<Self, OptionError> {
        opts.sink_parallelism()?;
        Ok(PrintConfig {
            identifier: opts.optional("print-identifier"),
            standard_error: opts.bool_or("standard-error", false)?,
        })
    }

    pub fn describe(&self) -> String {
        let target = if self.standard_error {
            "stderr"
        } else {
            "stdout"
        };
        match &self.identifier {
            Some(id) => format!("print to {target} as `{id}`"),
            None => format!("print to {target}"),
        }
    }
}

pub struct PrintSink {
    config: PrintConfig,
}

impl PrintSink {
    pub fn new(config: PrintConfig) -> Self {
        PrintSink { config }
    }
}

/// One display formatter per column of `batch` (`formatters[c].value(row)` shows a value).
pub fn column_formatters<'a>(
    batch: &'a RecordBatch,
    options: &'a FormatOptions<'a>,
) -> Result<Vec<ArrayFormatter<'a>>, arrow::error::ArrowError> {
    batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), options))
        .collect()
}

/// Formats each row as Flink does: its kind, then its values (`+I[a, b, c]`, `-U[…]`).
pub fn format_rows(batch: &RecordBatch, prefix: &str) -> Result<String, JobError> {
    let options = FormatOptions::new()
        .with_null("null")
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3f"))
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"));
    let kinds = row_kinds(batch);
    let values = without_kinds(batch);
    let formatters = column_formatters(&values, &options)?;
    let mut out = String::new();
    for (row, kind) in kinds.iter().enumerate() {
        out.push_str(prefix);
        out.push_str(kind.symbol());
        out.push('[');
        for (i, f) in formatters.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&f.value(row).to_string());
        }
        out.push_str("]\n");
    }
    Ok(out)
}

#[async_trait]
impl Sink for PrintSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), JobError> {
        let prefix = self
            .config
            .identifier
            .as_ref()
            .map(|i| format!("{i}> "))
            .unwrap_or_default();
        let text = format_rows(&batch, &prefix)?;
        let result = if self.config.standard_error {
            std::io::stderr().lock().write_all(text.as_bytes())
        } else {
            std::io::stdout().lock().write_all(text.as_bytes())
        };
        // A closed pipe (`sluice run q.sql | head`) ends output; it is not a job failure.
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(JobError::io("print sink", e))
            }
            _ => Ok(()),
        }
    }

    async fn flush(&mut self) -> Result<(), JobError> {
        let _ = std::io::stdout().flush();
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), JobError> {
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn formats_rows_like_flink() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("s", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("V1"), None])),
                Arc::new(TimestampMillisecondArray::from(vec![1709280103639, 0])),
                Arc::new(Float64Array::from(vec![122.16, 1.0])),
            ],
        )
        .unwrap();
        let text = format_rows(&batch, "alerts> ").unwrap();
        assert_eq!(
            text,
            "alerts> +I[V1, 2024-03-01T08:01:43.639, 122.16]\nalerts> +I[null, 1970-01-01T00:00:00.000, 1.0]\n"
        );
    }
}
