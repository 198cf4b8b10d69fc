//! `filesystem`: JSON-lines or CSV files. As a source: a file, a directory (its files in name
//! order) or a glob, read once (bounded), `.gz` files decompressed. As a sink: a directory of
//! part files, written as `.part-….inprogress` and renamed when rolled or finished, so readers
//! never see half-written files.

mod sink;
mod source;

pub use sink::FileSink;
pub use source::{FileSource, read_all};

use std::path::PathBuf;
use std::time::Duration;

use arrow::datatypes::SchemaRef;

use crate::formats::Format;
use crate::options::OptionError;
use crate::options::OptionReader;

#[derive(Debug, Clone)]
pub struct FilesystemConfig {
    pub path: String,
    pub format: Format,
    pub schema: SchemaRef,
    pub rolling_file_size: u64,
    pub rollover_interval: Duration,
}

/// The options `from_options` reads, with their choices (for the shell's completion).
pub const OPTIONS: &[(&str, &[&str])] = &[
    ("path", &[]),
    ("format", crate::formats::NAMES),
    ("sink.rolling-policy.file-size", &[]),
    ("sink.rolling-policy.rollover-interval", &[]),
];

impl FilesystemConfig {
    pub fn from_options(opts: &OptionReader, schema: &SchemaRef) -> Result<Self, OptionError> {
        let path = opts.required("path")?;
        opts.required("format")?;
        let format = Format::from_options(opts, "format")?;
        if matches!(format, Format::Raw) && schema.fields().len() != 1 {
            return Err(opts.error(
                "format",
                "format 'raw' needs a table with exactly one column",
            ));
        }
        let rolling_file_size = opts.parse_or(
            "sink.rolling-policy.file-size",
            128u64 << 20,
            "a size in bytes",
        )?;
        let rollover_interval = opts
            .duration_opt("sink.rolling-policy.rollover-interval")?
            .unwrap_or(Duration::from_secs(30 * 60));
        Ok(FilesystemConfig {
            path,
            format,
            schema: schema.clone(),
            rolling_file_size,
            rollover_interval,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "filesystem path={} format={}",
            self.path,
            self.format.name()
        )
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.path)
    }
}
