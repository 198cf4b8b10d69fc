//! Writing part files into the sink directory.

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

    async fn open(&mut self, writer: &str) -> Result<(), JobError> {
        // `writer` is `<job>/<pipeline>[-late]`; the job name is already the directory's concern.
        let pipeline: String = writer
            .rsplit('/')
            .next()
            .unwrap_or(writer)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        self.run_id = format!("{}-{pipeline}", self.run_id);
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), JobError> {
        self.roll()
    }
}
