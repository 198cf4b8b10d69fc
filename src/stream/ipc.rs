//! Batches as Arrow IPC bytes: the rows a checkpoint stages for a sink, and the rows a
//! repartition topic carries between the workers of a job.

use arrow::array::RecordBatch;

use super::JobError;

/// Batches as one Arrow IPC stream.
pub fn encode_batches(batches: &[RecordBatch]) -> Result<Vec<u8>, JobError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let mut buf = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &first.schema())?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    drop(w);
    Ok(buf)
}

/// Reads what [`encode_batches`] wrote.
pub fn decode_batches(bytes: &[u8]) -> Result<Vec<RecordBatch>, JobError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}
