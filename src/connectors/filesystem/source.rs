//! Reading files: a dedicated thread reads and decodes (I/O and JSON parsing off the async
//! workers), batches cross to the source task over a bounded channel. [`read_all`] reads a table
//! whole instead, for the lookup side of a join.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use flate2::read::MultiGzDecoder;
use tokio::sync::mpsc;

use super::FilesystemConfig;
use crate::connectors::ScanColumns;
use crate::formats::{RecordBoundaries, RecordDecoder};
use crate::stream::{JobError, Position, Source, SourceEnd, SourceOutput};

pub struct FileSource {
    config: FilesystemConfig,
    table: String,
    columns: ScanColumns,
}

impl FileSource {
    pub fn new(
        config: FilesystemConfig,
        table: &str,
        columns: ScanColumns,
    ) -> Result<Self, JobError> {
        Ok(FileSource {
            config,
            table: table.to_string(),
            columns,
        })
    }
}

/// Decoded rows, the number of bad records skipped to get them, and where the read stands.
type Chunk = Result<(RecordBatch, usize, Position), JobError>;

/// A file's position once it has been read to its end.
const FILE_DONE: u64 = u64::MAX;

#[async_trait]
impl Source for FileSource {
    async fn run(self: Box<Self>, out: &mut dyn SourceOutput) -> Result<SourceEnd, JobError> {
        let files = list_files(&self.config.path).map_err(|m| JobError::source(&self.table, m))?;
        out.set_splits(1);
        let (tx, mut rx) = mpsc::channel::<Chunk>(4);
        let mut decoder = RecordDecoder::new(
            self.config.format.clone(),
            self.config.schema.clone(),
            out.batch_size(),
        )
        .with_required(&self.columns.required)
        .with_projection(self.columns.decode.clone());
        let batch_rows = out.batch_size();
        // A restored source goes on where it stood: files read to the end are skipped, the
        // one it was in is read from the byte after its last emitted line.
        let restored = out.restored().clone();
        let reader = std::thread::Builder::new()
            .name(format!("read-{}", self.table))
            .spawn(move || {
                for file in files {
                    let key: Arc<str> = file.display().to_string().into();
                    let skip = restored.get(&*key).copied().unwrap_or(0);
                    if skip == FILE_DONE {
                        continue;
                    }
                    // A failed send means the source task stopped: stop reading.
                    let mut emit = |batch, skipped, consumed| {
                        let at = Position {
                            key: key.clone(),
                            next: consumed,
                        };
                        tx.blocking_send(Ok((batch, skipped, at))).is_ok()
                    };
                    match read_file(&file, &mut decoder, batch_rows, skip, &mut emit) {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                    let done = Position {
                        key: key.clone(),
                        next: FILE_DONE,
                    };
                    let empty = RecordBatch::new_empty(decoder.schema().clone());
                    if tx.blocking_send(Ok((empty, 0, done))).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| JobError::io("starting the file reader thread", e))?;
        loop {
            let chunk = tokio::select! {
                chunk = rx.recv() => chunk,
                _ = out.stopped() => return Ok(SourceEnd::Stopped),
            };
            match chunk {
                Some(Ok((batch, skipped, at))) => {
                    out.count_bad_records(skipped);
                    out.emit(0, batch, at).await?;
                }
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        let _ = reader.join();
        Ok(SourceEnd::Exhausted)
    }
}

/// Every row of a filesystem table, read now, in the table's physical schema. Bad records fail
/// the call naming file and line, or, with `*.ignore-parse-errors`, are skipped and counted in
/// the returned total.
pub fn read_all(
    config: &FilesystemConfig,
    table: &str,
) -> Result<(Vec<RecordBatch>, usize), JobError> {
    const BATCH_ROWS: usize = 8192;
    let files = list_files(&config.path).map_err(|m| JobError::source(table, m))?;
    let mut decoder = RecordDecoder::new(config.format.clone(), config.schema.clone(), BATCH_ROWS);
    let (mut batches, mut skipped_total) = (Vec::new(), 0);
    for file in files {
        read_file(
            &file,
            &mut decoder,
            BATCH_ROWS,
            0,
            &mut |batch, skipped, _| {
                batches.push(batch);
                skipped_total += skipped;
                true
            },
        )?;
    }
    Ok((batches, skipped_total))
}

/// The files `path` names: a glob, a directory's visible files in name order, or one file.
pub fn list_files(path: &str) -> Result<Vec<PathBuf>, String> {
    let files: Vec<PathBuf> = if path.contains(['*', '?', '[']) {
        let paths = glob::glob(path).map_err(|e| format!("bad glob '{path}': {e}"))?;
        paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect()
    } else {
        let p = Path::new(path);
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot list directory '{path}': {e}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && !is_hidden(p))
                .collect();
            v.sort();
            v
        } else if p.is_file() {
            vec![p.to_path_buf()]
        } else {
            return Err(format!("path '{path}' does not exist"));
        }
    };
    if files.is_empty() {
        return Err(format!("no files at '{path}'"));
    }
    Ok(files)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
}

const READ_CHUNK: usize = 4 << 20;

/// Reads one file in large chunks, cuts them into runs of at most `batch_rows` whole lines, and
/// decodes each run into one batch, handed to `emit` with the number of bad records skipped and
/// the bytes of the (decompressed) file consumed so far. The first `skip` bytes (whole lines
/// read by an earlier run) are passed over. Returns false when `emit` returned false to stop.
fn read_file(
    path: &Path,
    decoder: &mut RecordDecoder,
    batch_rows: usize,
    skip: u64,
    emit: &mut dyn FnMut(RecordBatch, usize, u64) -> bool,
) -> Result<bool, JobError> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(|e| JobError::io(format!("opening {display}"), e))?;
    let mut reader: Box<dyn Read> = if display.ends_with(".gz") {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)))
    } else {
        Box::new(file)
    };
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK * 2);
    let mut first_line: u64 = 1;
    // Bytes of the file before `buf[0]`.
    let mut consumed: u64 = 0;
    while consumed < skip {
        let want = (skip - consumed).min(READ_CHUNK as u64) as usize;
        buf.resize(want, 0);
        let n = read_full(&mut reader, &mut buf)
            .map_err(|e| JobError::io(format!("reading {display}"), e))?;
        if n == 0 {
            return Err(JobError::source(
                &display,
                format!(
                    "the file is shorter than the {skip} bytes a checkpoint says were read; was it replaced?"
                ),
            ));
        }
        first_line += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        consumed += n as u64;
    }
    buf.clear();
    let mut eof = false;
    let mut padded = false;
    while !eof {
        let start = buf.len();
        buf.resize(start + READ_CHUNK, 0);
        let n = read_full(&mut reader, &mut buf[start..])
            .map_err(|e| JobError::io(format!("reading {display}"), e))?;
        buf.truncate(start + n);
        eof = n == 0;
        if eof && buf.last().is_some_and(|b| *b != b'\n') {
            buf.push(b'\n'); // a last line without newline is still a record
            padded = true;
        }
        // Decode every complete run of lines; keep the partial last line for the next read.
        let mut done = 0;
        loop {
            let mut lines = 0;
            let mut end = None;
            for nl in memchr::memchr_iter(b'\n', &buf[done..]) {
                lines += 1;
                end = Some(done + nl + 1);
                if lines == batch_rows {
                    break;
                }
            }
            // A short run at the end of a read is decoded now rather than carried over: copying
            // it to the front of the buffer costs more than a smaller batch does.
            let Some(end) = end else { break };
            let base = first_line;
            let locate = |i: usize| format!("{display}:{}", base + i as u64);
            let decoded = decoder.decode(&buf[done..end], RecordBoundaries::Lines, &locate)?;
            first_line += lines as u64;
            done = end;
            // The newline added to close a last line is not in the file.
            let at = consumed + done as u64 - u64::from(padded && done == buf.len());
            if !emit(decoded.batch, decoded.skipped.len(), at) {
                return Ok(false);
            }
        }
        consumed += done as u64;
        buf.drain(..done);
    }
    Ok(true)
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
