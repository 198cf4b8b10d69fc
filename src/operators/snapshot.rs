//! Operator state as Arrow IPC: one stream of batches with string metadata on the schema.
//! Partial aggregate states are Arrow arrays already, so a snapshot is a few batches.

use std::collections::HashMap;
use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::stream::JobError;

/// Writes `batches` (all of `schema`, tagged with `metadata`) as an Arrow IPC stream.
pub fn encode(
    schema: &SchemaRef,
    metadata: HashMap<String, String>,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, JobError> {
    let schema = Schema::new_with_metadata(schema.fields().clone(), metadata);
    let mut buf = Vec::new();
    let mut w = StreamWriter::try_new(&mut buf, &schema)?;
    for b in batches {
        w.write(&RecordBatch::try_new(
            std::sync::Arc::new(schema.clone()),
            b.columns().to_vec(),
        )?)?;
    }
    w.finish()?;
    drop(w);
    Ok(buf)
}

/// Reads a stream written by [`encode`]: its metadata and batches.
pub fn decode(bytes: &[u8]) -> Result<(HashMap<String, String>, Vec<RecordBatch>), JobError> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let metadata = reader.schema().metadata().clone();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((metadata, batches))
}

/// A metadata value parsed, or an error naming the key.
pub fn meta<T: std::str::FromStr>(
    metadata: &HashMap<String, String>,
    key: &str,
) -> Result<T, JobError> {
    metadata
        .get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| JobError::internal(format!("snapshot lacks a valid '{key}'")))
}

/// Several encoded streams as one snapshot: each preceded by its length (u64, little endian).
pub fn join_parts(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The streams [`join_parts`] put together.
pub fn split_parts(mut bytes: &[u8]) -> Result<Vec<&[u8]>, JobError> {
    let mut parts = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| JobError::internal("a snapshot part without its length"))?;
        let len = usize::try_from(u64::from_le_bytes(*len))
            .ok()
            .filter(|&n| n <= rest.len())
            .ok_or_else(|| JobError::internal("a snapshot part longer than the snapshot"))?;
        parts.push(&rest[..len]);
        bytes = &rest[len..];
    }
    Ok(parts)
}

/// The metadata of an event-time operator's snapshot: its watermark and late rows so far.
pub fn clock(watermark: i64, late_rows: u64) -> HashMap<String, String> {
    HashMap::from([
        ("watermark".to_string(), watermark.to_string()),
        ("late_rows".to_string(), late_rows.to_string()),
    ])
}

/// The watermark and late rows of [`clock`] metadata.
pub fn read_clock(metadata: &HashMap<String, String>) -> Result<(i64, u64), JobError> {
    Ok((meta(metadata, "watermark")?, meta(metadata, "late_rows")?))
}
