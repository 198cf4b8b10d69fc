//! Writing part files into the sink directory.
//!
//! With exactly-once checkpoints the runtime hands over each completed checkpoint's rows
//! ([`Sink::write_epoch`]): they are written to a hidden in-progress file and renamed to
//! `part-<run>-<sink>-<epoch>-<n>.<format>`, a name the same epoch always gets, so an epoch
//! written again after a crash replaces its own files and adds none. In-progress files of a
//! crashed run are hidden (readers skip them) and removed when the sink opens. Without
//! checkpoints, part files roll by size and age and become visible as they roll.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use async_trait::async_trait;

use super::FilesystemConfig;
use crate::stream::{JobError, Sink};

pub struct FileSink {
    config: FilesystemConfig,
    table: String,
    dir: PathBuf,
    /// Unique per run and pipeline, so neither restarts nor several pipelines writing one
    /// table (a statement set) ever write the same part file.
    run_id: String,
    counter: u64,
    current: Option<PartFile>,
    /// File name stem of checkpoint epochs, from the writer name: the same across restores.
    epoch_stem: String,
}

struct PartFile {
    writer: BufWriter<File>,
    in_progress: PathBuf,
    final_path: PathBuf,
    bytes: u64,
    opened: Instant,
}

impl FileSink {
    pub fn new(config: FilesystemConfig, table: &str) -> Result<Self, JobError> {
        let dir = config.path();
        std::fs::create_dir_all(&dir)
            .map_err(|e| JobError::io(format!("creating sink directory {}", dir.display()), e))?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Ok(FileSink {
            config,
            table: table.to_string(),
            dir,
            run_id: format!("{millis:x}-{}", std::process::id()),
            counter: 0,
            current: None,
            epoch_stem: String::new(),
        })
    }

    fn part_file(&mut self) -> Result<&mut PartFile, JobError> {
        if self.current.is_none() {
            let name = format!(
                "part-{}-{}.{}",
                self.run_id,
                self.counter,
                self.config.format.name()
            );
            self.counter += 1;
            let in_progress = self.dir.join(format!(".{name}.inprogress"));
            let file = File::create(&in_progress)
                .map_err(|e| JobError::io(format!("creating {}", in_progress.display()), e))?;
            self.current = Some(PartFile {
                writer: BufWriter::with_capacity(1 << 20, file),
                in_progress,
                final_path: self.dir.join(name),
                bytes: 0,
                opened: Instant::now(),
            });
        }
        Ok(self.current.as_mut().expect("opened above"))
    }

    /// Writes `bytes` as part file `name`: aside first, then renamed, so it appears whole.
    fn publish(&self, name: &str, bytes: &[u8]) -> Result<(), JobError> {
        let in_progress = self.dir.join(format!(".{name}.inprogress"));
        let final_path = self.dir.join(name);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&in_progress)?;
            f.write_all(bytes)?;
            f.sync_data()?;
            std::fs::rename(&in_progress, &final_path)
        };
        write().map_err(|e| JobError::io(format!("writing {}", final_path.display()), e))
    }

    /// Removes in-progress files this sink left when a run of it crashed.
    fn remove_abandoned(&self) -> Result<(), JobError> {
        let prefix = format!(".{}-", self.epoch_stem);
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| JobError::io(format!("listing {}", self.dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".inprogress") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Closes the current part file and makes it visible under its final name.
    fn roll(&mut self) -> Result<(), JobError> {
        if let Some(mut part) = self.current.take() {
            part.writer
                .flush()
                .map_err(|e| JobError::io(format!("writing {}", part.in_progress.display()), e))?;
            std::fs::rename(&part.in_progress, &part.final_path).map_err(|e| {
                JobError::io(format!("committing {}", part.final_path.display()), e)
            })?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), JobError> {
        let bytes = self
            .config
            .format
            .encode(&batch)
            .map_err(|e| JobError::sink(&self.table, e.to_string()))?;
        let limit = self.config.rolling_file_size;
        let part = self.part_file()?;
        part.writer
            .write_all(&bytes)
            .map_err(|e| JobError::io(format!("writing {}", part.in_progress.display()), e))?;
        part.bytes += bytes.len() as u64;
        if part.bytes >= limit {
            self.roll()?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), JobError> {
        let interval = self.config.rollover_interval;
        if let Some(part) = &mut self.current {
            part.writer
                .flush()
                .map_err(|e| JobError::io(format!("writing {}", part.in_progress.display()), e))?;
            if part.opened.elapsed() >= interval {
                self.roll()?;
            }
        }
        Ok(())
    }

    async fn barrier(&mut self) -> Result<(), JobError> {
        // The part file in progress becomes visible: a checkpoint counts its rows as written.
        self.roll()
    }

    async fn open(&mut self, writer: &str) -> Result<(), JobError> {
        // `writer` is `<job>/<run>/<pipeline>/<table>`; the job is the directory's concern.
        let parts: Vec<&str> = writer.splitn(2, '/').collect();
        let name: String = parts
            .last()
            .unwrap_or(&writer)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.run_id = format!("{}-{name}", self.run_id);
        self.epoch_stem = format!("part-{name}");
        self.remove_abandoned()
    }

    fn writes_epochs(&self) -> bool {
        true
    }

    async fn write_epoch(&mut self, epoch: u64, batches: &[RecordBatch]) -> Result<(), JobError> {
        let ext = self.config.format.name();
        let limit = self.config.rolling_file_size;
        let (mut n, mut bytes) = (0, Vec::new());
        for (i, batch) in batches.iter().enumerate() {
            let encoded = self
                .config
                .format
                .encode(batch)
                .map_err(|e| JobError::sink(&self.table, e.to_string()))?;
            bytes.extend_from_slice(&encoded);
            if bytes.len() as u64 >= limit || i + 1 == batches.len() {
                let name = format!("{}-{epoch:08}-{n}.{ext}", self.epoch_stem);
                self.publish(&name, &std::mem::take(&mut bytes))?;
                n += 1;
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), JobError> {
        self.roll()
    }
}
