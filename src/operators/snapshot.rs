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
    let (schema, batches) = read(bytes)?;
    Ok((schema.metadata().clone(), batches))
}

/// Reads a stream written by [`encode`]: its schema (metadata included) and batches.
pub fn read(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), JobError> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Metadata saying whose key each row of a stream holds: the stream's columns that are
/// columns of the operator's input `input`, as (stream column, input column). A rescale
/// hashes them as the source's router does, to find the subtask that owns each row now.
pub fn keyed(
    input: usize,
    columns: impl IntoIterator<Item = (usize, usize)>,
) -> [(String, String); 2] {
    let columns: Vec<String> = columns
        .into_iter()
        .map(|(part, input)| format!("{part}:{input}"))
        .collect();
    [
        (KEYED_INPUT.to_string(), input.to_string()),
        (KEYED_COLUMNS.to_string(), columns.join(",")),
    ]
}

/// [`keyed`] for a stream of the operator's input rows (their columns first, in order).
pub fn keyed_rows(input: usize, schema: &Schema) -> [(String, String); 2] {
    keyed(input, (0..schema.fields().len()).map(|c| (c, c)))
}

/// [`keyed`] for a stream whose first columns are the values of `keys`: the plain columns
/// among them.
pub fn keyed_by_keys(
    input: usize,
    keys: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>],
) -> [(String, String); 2] {
    keyed(
        input,
        keys.iter().enumerate().filter_map(|(i, e)| {
            e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                .map(|c| (i, c.index()))
        }),
    )
}

/// Metadata keys of [`keyed`].
pub const KEYED_INPUT: &str = "keyed.input";
pub const KEYED_COLUMNS: &str = "keyed.columns";

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

/// What a snapshot of several parts starts with (an Arrow stream starts with `0xFFFFFFFF`).
const PARTS: &[u8; 8] = b"SLUICE-P";

/// True when `bytes` is a snapshot of several parts ([`join_parts`]).
pub fn has_parts(bytes: &[u8]) -> bool {
    bytes.starts_with(PARTS)
}

/// Several encoded streams as one snapshot: a marker, then each stream preceded by its length
/// (u64, little endian).
pub fn join_parts(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = PARTS.to_vec();
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The streams [`join_parts`] put together.
pub fn split_parts(bytes: &[u8]) -> Result<Vec<&[u8]>, JobError> {
    // Snapshots written before the marker have none.
    let mut bytes = bytes.strip_prefix(PARTS).unwrap_or(bytes);
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
