//! Record formats: bytes ⇄ Arrow batches, with Flink's format options.
//!
//! Decoding goes straight from bytes into Arrow columns with arrow-json / arrow-csv, a whole batch
//! at a time. Only when a batch fails is it decoded again record by record, to find the bad
//! records, name them, and (with `*.ignore-parse-errors`) skip and count them.

mod csv;
mod decoder;
mod json;

pub use decoder::{Decoded, RecordBoundaries, RecordDecoder};

use arrow::array::RecordBatch;

use crate::options::OptionError;
use crate::options::OptionReader;
use crate::stream::JobError;

/// A value format and its options, read once at plan time.
#[derive(Debug, Clone)]
pub enum Format {
    Json(JsonOptions),
    Csv(CsvOptions),
    /// One column of STRING or BYTES holding the whole payload.
    Raw,
}

#[derive(Debug, Clone)]
pub struct JsonOptions {
    pub ignore_parse_errors: bool,
    pub fail_on_missing_field: bool,
    /// `json.timestamp-format.standard`: 'SQL' writes `2024-03-01 08:00:00.000`, 'ISO-8601'
    /// writes `2024-03-01T08:00:00.000`. Both are accepted when reading.
    pub iso_timestamps: bool,
}

#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub ignore_parse_errors: bool,
    pub null_literal: Option<String>,
}

/// The formats there are.
pub const NAMES: &[&str] = &["json", "csv", "raw"];

/// `*.timestamp-format.standard`'s choices.
pub const TIMESTAMP_STANDARDS: &[&str] = &["SQL", "ISO-8601"];

/// The options of the formats, with their choices (for the shell's completion).
pub const OPTIONS: &[(&str, &[&str])] = &[
    ("json.ignore-parse-errors", &["true", "false"]),
    ("json.fail-on-missing-field", &["true", "false"]),
    ("json.timestamp-format.standard", TIMESTAMP_STANDARDS),
    ("csv.field-delimiter", &[]),
    ("csv.quote-character", &[]),
    ("csv.ignore-parse-errors", &["true", "false"]),
    ("csv.null-literal", &[]),
];

impl Format {
    /// Reads the format named by `format_key` and its `<format>.*` options.
    pub fn from_options(opts: &OptionReader, format_key: &str) -> Result<Format, OptionError> {
        let name = opts.choice_or(format_key, NAMES, "")?;
        Ok(match name.as_str() {
            "json" => Format::Json(JsonOptions {
                ignore_parse_errors: opts.bool_or("json.ignore-parse-errors", false)?,
                fail_on_missing_field: opts.bool_or("json.fail-on-missing-field", false)?,
                iso_timestamps: opts.choice_or(
                    "json.timestamp-format.standard",
                    TIMESTAMP_STANDARDS,
                    "SQL",
                )? == "ISO-8601",
            }),
            "csv" => {
                let delimiter = single_byte(opts, "csv.field-delimiter", ",")?;
                let quote = single_byte(opts, "csv.quote-character", "\"")?;
                Format::Csv(CsvOptions {
                    delimiter,
                    quote,
                    ignore_parse_errors: opts.bool_or("csv.ignore-parse-errors", false)?,
                    null_literal: opts.optional("csv.null-literal"),
                })
            }
            _ => Format::Raw,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Format::Json(_) => "json",
            Format::Csv(_) => "csv",
            Format::Raw => "raw",
        }
    }

    /// True when bad records are skipped and counted rather than failing the job.
    pub fn ignores_parse_errors(&self) -> bool {
        match self {
            Format::Json(o) => o.ignore_parse_errors,
            Format::Csv(o) => o.ignore_parse_errors,
            Format::Raw => false,
        }
    }

    /// The option that turns bad-record failures into skip-and-count.
    pub fn ignore_errors_option(&self) -> &'static str {
        match self {
            Format::Json(_) => "json.ignore-parse-errors",
            Format::Csv(_) => "csv.ignore-parse-errors",
            Format::Raw => "raw",
        }
    }

    /// Encodes a batch as one record per row, each ending with `\n`.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<u8>, JobError> {
        match self {
            Format::Json(o) => json::encode_lines(batch, o.iso_timestamps),
            Format::Csv(o) => csv::encode_lines(batch, o),
            Format::Raw => raw_encode(batch),
        }
    }
}

fn single_byte(opts: &OptionReader, key: &str, default: &str) -> Result<u8, OptionError> {
    let v = opts.optional(key).unwrap_or_else(|| default.to_string());
    let v = if v == "\\t" { "\t".to_string() } else { v };
    match v.as_bytes() {
        [b] => Ok(*b),
        _ => Err(opts.error(
            key,
            format!("option '{key}' must be a single character, got '{v}'"),
        )),
    }
}

fn raw_encode(batch: &RecordBatch) -> Result<Vec<u8>, JobError> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    if batch.num_columns() != 1 {
        return Err(JobError::internal("format 'raw' needs exactly one column"));
    }
    let col = batch.column(0);
    let mut out = Vec::new();
    for i in 0..batch.num_rows() {
        match col.data_type() {
            DataType::Utf8 => out.extend_from_slice(col.as_string::<i32>().value(i).as_bytes()),
            DataType::Binary => out.extend_from_slice(col.as_binary::<i32>().value(i)),
            other => {
                return Err(JobError::internal(format!(
                    "format 'raw' needs STRING or BYTES, got {other}"
                )));
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// `yyyy-MM-dd HH:mm:ss.SSS`: Flink's SQL timestamp text, millisecond precision.
pub const SQL_TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";
pub const ISO_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3f";
