//! JSON lines encoding (arrow-json's writer), with Flink's timestamp text and explicit nulls.

use arrow::array::RecordBatch;
use arrow::json::writer::{LineDelimited, WriterBuilder};

use super::{ISO_TIMESTAMP_FORMAT, SQL_TIMESTAMP_FORMAT};
use crate::stream::JobError;

pub fn encode_lines(batch: &RecordBatch, iso_timestamps: bool) -> Result<Vec<u8>, JobError> {
    let ts = if iso_timestamps {
        ISO_TIMESTAMP_FORMAT
    } else {
        SQL_TIMESTAMP_FORMAT
    };
    let mut buf = Vec::with_capacity(batch.num_rows() * 128);
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_format(ts.to_string())
        .with_timestamp_tz_format(format!("{ts}Z"))
        .with_datetime_format(ts.to_string())
        .build::<_, LineDelimited>(&mut buf);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(buf)
}
