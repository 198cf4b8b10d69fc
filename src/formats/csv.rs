//! CSV encoding (arrow-csv's writer): no header, as Flink's csv format writes.

use arrow::array::RecordBatch;
use arrow::csv::WriterBuilder;

use super::{CsvOptions, SQL_TIMESTAMP_FORMAT};
use crate::stream::JobError;

pub fn encode_lines(batch: &RecordBatch, opts: &CsvOptions) -> Result<Vec<u8>, JobError> {
    let mut buf = Vec::with_capacity(batch.num_rows() * 96);
    let mut builder = WriterBuilder::new()
        .with_header(false)
        .with_delimiter(opts.delimiter)
        .with_quote(opts.quote)
        .with_timestamp_format(SQL_TIMESTAMP_FORMAT.to_string())
        .with_timestamp_tz_format(format!("{SQL_TIMESTAMP_FORMAT}Z"))
        .with_datetime_format(SQL_TIMESTAMP_FORMAT.to_string());
    if let Some(null) = &opts.null_literal {
        builder = builder.with_null(null.clone());
    }
    let mut writer = builder.build(&mut buf);
    writer.write(batch)?;
    drop(writer);
    Ok(buf)
}
