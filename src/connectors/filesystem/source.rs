//! Reading files: a dedicated thread reads and decodes (I/O and JSON parsing off the async
//! workers), batches cross to the source task over a bounded channel. [`read_all`] reads a table
//! whole instead, for the lookup side of a join.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use flate2::read::MultiGzDecoder;
use tokio::sync::mpsc;

use super::FilesystemConfig;
use crate::connectors::ScanColumns;
use crate::formats::{RecordBoundaries, RecordDecoder};
use crate::stream::{JobError, Source, SourceEnd, SourceOutput};

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

/// Decoded rows and the number of bad records skipped to get them.
type Chunk = Result<(RecordBatch, usize), JobError>;

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
        let reader = std::thread::Builder::new()
            .name(format!("read-{}", self.table))
            .spawn(move || {
                // A failed send means the source task stopped: stop reading.
                let mut emit = |batch, skipped| tx.blocking_send(Ok((batch, skipped))).is_ok();
                for file in files {
                    if let Err(e) = read_file(&file, &mut decoder, batch_rows, &mut emit) {
                        let _ = tx.blocking_send(Err(e));
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
                Some(Ok((batch, skipped))) => {
                    out.count_bad_records(skipped);
                    out.emit(0, batch).await?;
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
        read_file(&file, &mut decoder, BATCH_ROWS, &mut |batch, skipped| {
            batches.push(batch);
            skipped_total += skipped;
            true
        })?;
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
/// decodes each run into one batch, handed to `emit` with the number of bad records skipped;
/// `emit` returning false stops the read.
fn read_file(
    path: &Path,
    decoder: &mut RecordDecoder,
    batch_rows: usize,
    emit: &mut dyn FnMut(RecordBatch, usize) -> bool,
) -> Result<(), JobError> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(|e| JobError::io(format!("opening {display}"), e))?;
    let mut reader: Box<dyn Read> = if display.ends_with(".gz") {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)))
    } else {
        Box::new(file)
    };
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK * 2);
    let mut first_line: u64 = 1;
    let mut eof = false;
    while !eof {
        let start = buf.len();
        buf.resize(start + READ_CHUNK, 0);
        let n = read_full(&mut reader, &mut buf[start..])
            .map_err(|e| JobError::io(format!("reading {display}"), e))?;
        buf.truncate(start + n);
        eof = n == 0;
        if eof && buf.last().is_some_and(|b| *b != b'\n') {
            buf.push(b'\n'); // a last line without newline is still a record
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
            if !emit(decoded.batch, decoded.skipped.len()) {
                return Ok(());
            }
        }
        buf.drain(..done);
    }
    Ok(())
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
