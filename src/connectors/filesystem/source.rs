//! Reading files: a dedicated thread reads the files and cuts them into runs of whole lines;
//! decoder threads (one per core, up to four: JSON parsing is the costliest step of a simple
//! pipeline) turn runs into batches, and the source task emits them in file order — the same
//! batches, in the same order, as one thread would give, sooner. [`read_all`] reads a table whole
//! instead, for the lookup side of a join.

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
    /// Threads that decode (the job's parallelism).
    decoders: usize,
}

impl FileSource {
    pub fn new(
        config: FilesystemConfig,
        table: &str,
        columns: ScanColumns,
        decoders: usize,
    ) -> Result<Self, JobError> {
        Ok(FileSource {
            config,
            table: table.to_string(),
            columns,
            decoders: decoders.max(1),
        })
    }
}

/// Decoded rows, the number of bad records skipped to get them, and where the read stands.
type Chunk = Result<(RecordBatch, usize, Position), JobError>;

/// A file's position once it has been read to its end.
const FILE_DONE: u64 = u64::MAX;

/// Work for a decoder thread, numbered in file order.
enum Job {
    /// Lines of `file` from line `first_line`; the file's bytes consumed after them.
    Decode {
        seq: u64,
        file: Arc<str>,
        lines: Vec<u8>,
        first_line: u64,
        consumed: u64,
    },
    /// `file` was read to its end.
    FileDone { seq: u64, file: Arc<str> },
    /// The files could not be read on.
    Failed { seq: u64, error: JobError },
}

#[async_trait]
impl Source for FileSource {
    async fn run(self: Box<Self>, out: &mut dyn SourceOutput) -> Result<SourceEnd, JobError> {
        let files = list_files(&self.config.path).map_err(|m| JobError::source(&self.table, m))?;
        out.set_splits(1);
        let threads = self.decoders;
        let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<Job>(threads * 2);
        let jobs_rx = Arc::new(std::sync::Mutex::new(jobs_rx));
        let (tx, mut rx) = mpsc::channel::<(u64, Chunk)>(threads * 2);
        let batch_rows = out.batch_size();
        let new_decoder = || {
            RecordDecoder::new(
                self.config.format.clone(),
                self.config.schema.clone(),
                batch_rows,
            )
            .with_required(&self.columns.required)
            .with_projection(self.columns.decode.clone())
        };
        let empty = RecordBatch::new_empty(new_decoder().schema().clone());
        let mut decoders = Vec::new();
        for i in 0..threads {
            let (jobs, tx, mut decoder) = (jobs_rx.clone(), tx.clone(), new_decoder());
            let empty = empty.clone();
            let worker = std::thread::Builder::new()
                .name(format!("decode-{}-{i}", self.table))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job.
                        let job = jobs.lock().map(|rx| rx.recv());
                        let Ok(Ok(job)) = job else { return };
                        let (seq, chunk) = decode(&mut decoder, job, &empty);
                        // A failed send means the source task stopped.
                        if tx.blocking_send((seq, chunk)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| JobError::io("starting a file decoder thread", e))?;
            decoders.push(worker);
        }
        // Only the decoders hold the jobs' receiver and the chunks' sender: when they stop,
        // the reader's next send fails and it stops too.
        drop((tx, jobs_rx));
        // A restored source goes on where it stood: files read to the end are skipped, the
        // one it was in is read from the byte after its last emitted line.
        let restored = out.restored().clone();
        let reader = std::thread::Builder::new()
            .name(format!("read-{}", self.table))
            .spawn(move || {
                let mut seq = 0;
                let mut next = || {
                    seq += 1;
                    seq - 1
                };
                for file in files {
                    let key: Arc<str> = file.display().to_string().into();
                    let skip = restored.get(&*key).copied().unwrap_or(0);
                    if skip == FILE_DONE {
                        continue;
                    }
                    // A failed send means the decoders stopped: stop reading.
                    let mut send = |lines: &[u8], first_line, consumed| {
                        let job = Job::Decode {
                            seq: next(),
                            file: key.clone(),
                            lines: lines.to_vec(),
                            first_line,
                            consumed,
                        };
                        jobs_tx.send(job).is_ok()
                    };
                    match read_file(&file, batch_rows, skip, &mut send) {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(error) => {
                            let _ = jobs_tx.send(Job::Failed { seq: next(), error });
                            return;
                        }
                    }
                    let done = Job::FileDone {
                        seq: next(),
                        file: key.clone(),
                    };
                    if jobs_tx.send(done).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| JobError::io("starting the file reader thread", e))?;
        // Chunks come as decoders finish them; they leave in file order.
        let mut waiting: std::collections::BTreeMap<u64, Chunk> = Default::default();
        let mut due = 0u64;
        let end = loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = out.stopped() => break SourceEnd::Stopped,
            };
            let Some((seq, chunk)) = next else {
                break SourceEnd::Exhausted;
            };
            waiting.insert(seq, chunk);
            while let Some(chunk) = waiting.remove(&due) {
                due += 1;
                let (batch, skipped, at) = chunk?;
                out.count_bad_records(skipped);
                out.emit(0, batch, at).await?;
            }
        };
        // Stopped: the threads end at their next send, into closed channels.
        drop(rx);
        if end == SourceEnd::Exhausted {
            let _ = reader.join();
            for d in decoders {
                let _ = d.join();
            }
        }
        Ok(end)
    }
}

/// A decoder thread's part of a job: its number and what the source emits for it.
fn decode(decoder: &mut RecordDecoder, job: Job, empty: &RecordBatch) -> (u64, Chunk) {
    match job {
        Job::Decode {
            seq,
            file,
            lines,
            first_line,
            consumed,
        } => {
            let locate = |i: usize| format!("{file}:{}", first_line + i as u64);
            let chunk = decoder
                .decode(&lines, RecordBoundaries::Lines, &locate)
                .map(|d| {
                    let at = Position {
                        key: file.clone(),
                        next: consumed,
                    };
                    (d.batch, d.skipped.len(), at)
                });
            (seq, chunk)
        }
        Job::FileDone { seq, file } => {
            let done = Position {
                key: file,
                next: FILE_DONE,
            };
            (seq, Ok((empty.clone(), 0, done)))
        }
        Job::Failed { seq, error } => (seq, Err(error)),
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
        let display = file.display().to_string();
        let mut failed = None;
        read_file(&file, BATCH_ROWS, 0, &mut |lines, first_line, _| {
            let locate = |i: usize| format!("{display}:{}", first_line + i as u64);
            match decoder.decode(lines, RecordBoundaries::Lines, &locate) {
                Ok(decoded) => {
                    skipped_total += decoded.skipped.len();
                    batches.push(decoded.batch);
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
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

/// Reads one file in large chunks and cuts them into runs of at most `batch_rows` whole lines,
/// each handed to `emit` with the number of its first line and the bytes of the (decompressed)
/// file consumed once it is done. The first `skip` bytes (whole lines read by an earlier run)
/// are passed over. Returns false when `emit` returned false to stop.
fn read_file(
    path: &Path,
    batch_rows: usize,
    skip: u64,
    emit: &mut dyn FnMut(&[u8], u64, u64) -> bool,
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
            // The newline added to close a last line is not in the file.
            let at = consumed + end as u64 - u64::from(padded && end == buf.len());
            if !emit(&buf[done..end], first_line, at) {
                return Ok(false);
            }
            first_line += lines as u64;
            done = end;
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
