//! Spreading a source's rows over the subtasks of a keyed pipeline, by key group as Flink does:
//! a row's key (some of its columns) hashes to one of `max-parallelism` key groups, and subtask
//! `k` of `n` owns a contiguous range of them. The hash is our own over the values' bytes
//! (CRC-32, then murmur's finalizer), so it stays the same across builds and machines: a
//! checkpoint's keys are found in the same subtask again.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};

use tokio::sync::mpsc;

use crate::connectors::kafka::RepartitionWriter;
use crate::stream::{CheckpointBarrier, JobError, Message};

/// Where the rows of one source go for one keyed pipeline.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyRouter {
    /// Key columns of the source's rows.
    columns: Vec<usize>,
    subtasks: usize,
    key_groups: u32,
}

impl KeyRouter {
    pub fn new(columns: Vec<usize>, subtasks: usize, key_groups: u32) -> Self {
        KeyRouter {
            columns,
            subtasks,
            key_groups: key_groups.max(1),
        }
    }

    /// The rows of `batch` for each subtask, in their order (`None`: no row for it).
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<Option<RecordBatch>>, JobError> {
        let keys: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        let owners = owners(&keys, batch.num_rows(), self.key_groups, self.subtasks)?;
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); self.subtasks];
        for (i, owner) in owners.into_iter().enumerate() {
            rows[owner].push(i as u32);
        }
        rows.into_iter()
            .map(|r| match r.len() {
                0 => Ok(None),
                n if n == batch.num_rows() => Ok(Some(batch.clone())),
                _ => Ok(Some(take_record_batch(batch, &UInt32Array::from(r))?)),
            })
            .collect()
    }
}

/// Where a source's messages (or a first stage's) go for one pipeline: to its one task, or
/// spread over its subtasks by key (batches; everything else goes to each).
pub(crate) struct PipelineInput {
    pub subtasks: Vec<mpsc::Sender<Message>>,
    pub router: Option<KeyRouter>,
    /// Without a router: whole batches to the subtasks in turn (a local aggregation's), else
    /// every batch to the one subtask.
    pub in_turn: Option<std::sync::atomic::AtomicUsize>,
    /// Each split's rows to its own subtask (a worker's tasks, one per partition it owns).
    pub by_split: bool,
}

impl PipelineInput {
    /// Sends one subtask's part of a batch to each subtask (`None`: nothing for it).
    pub async fn send_parts(&self, parts: Vec<Option<RecordBatch>>) -> Result<(), JobError> {
        for (tx, part) in self.subtasks.iter().zip(parts) {
            if let Some(part) = part {
                tx.send(Message::Batch(part))
                    .await
                    .map_err(|_| JobError::ChannelClosed)?;
            }
        }
        Ok(())
    }

    /// Sends each subtask its rows of `batch`, which came from split `split` of the source
    /// (or from a first stage: split 0).
    pub async fn send_rows(&self, split: usize, batch: RecordBatch) -> Result<(), JobError> {
        if self.by_split {
            let tx = self.subtasks.get(split).ok_or_else(|| {
                JobError::internal(format!(
                    "split {split} has no subtask among {}",
                    self.subtasks.len()
                ))
            })?;
            return tx
                .send(Message::Batch(batch))
                .await
                .map_err(|_| JobError::ChannelClosed);
        }
        match (&self.router, &self.in_turn) {
            (Some(router), _) => self.send_parts(router.split(&batch)?).await,
            (None, Some(next)) => {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.subtasks[k % self.subtasks.len()]
                    .send(Message::Batch(batch))
                    .await
                    .map_err(|_| JobError::ChannelClosed)
            }
            (None, None) => self.send_each(&Message::Batch(batch)).await,
        }
    }

    pub async fn send_each(&self, msg: &Message) -> Result<(), JobError> {
        for tx in &self.subtasks {
            tx.send(msg.clone())
                .await
                .map_err(|_| JobError::ChannelClosed)?;
        }
        Ok(())
    }
}

/// Where a first stage's subtask sends what it emits: to the second stage's subtasks in this
/// process, or (a worker's job) to a repartition topic, whose partition `k` the worker owning
/// source partition `k` reads.
pub(crate) enum NextStage {
    Local(PipelineInput),
    Topic {
        /// Rows to partitions by the key's hash.
        router: KeyRouter,
        writer: Box<RepartitionWriter>,
        /// The writer's state's id in checkpoints (`<task>/repartition`).
        state_id: String,
    },
}

impl NextStage {
    pub async fn send_rows(&mut self, batch: RecordBatch) -> Result<(), JobError> {
        match self {
            NextStage::Local(input) => input.send_rows(0, batch).await,
            NextStage::Topic { router, writer, .. } => {
                for (partition, part) in router.split(&batch)?.into_iter().enumerate() {
                    if let Some(part) = part {
                        writer.send_rows(partition, &part).await?;
                    }
                }
                Ok(())
            }
        }
    }

    pub async fn watermark(&mut self, watermark: i64) -> Result<(), JobError> {
        match self {
            NextStage::Local(input) => input.send_each(&Message::Watermark(watermark)).await,
            NextStage::Topic { writer, .. } => writer.send_watermark(watermark).await,
        }
    }

    /// Called now and then (the pipeline's flush interval): sends what a repartition topic's
    /// writer holds back.
    pub async fn flush(&mut self) -> Result<(), JobError> {
        match self {
            NextStage::Local(_) => Ok(()),
            NextStage::Topic { writer, .. } => writer.send_pending_watermark().await,
        }
    }

    /// Every input of the first stage is idle.
    pub async fn idle(&mut self) -> Result<(), JobError> {
        match self {
            NextStage::Local(input) => input.send_each(&Message::Idle).await,
            NextStage::Topic { writer, .. } => writer.send_idle().await,
        }
    }

    /// Before the first stage's snapshot at the barrier of `epoch`: what a repartition topic
    /// was sent must be stored before the checkpoint says it was sent, and what its writer
    /// holds belongs to the epoch.
    pub async fn before_snapshot(&mut self, epoch: u64) -> Result<(), JobError> {
        match self {
            NextStage::Local(_) => Ok(()),
            NextStage::Topic { writer, .. } => {
                writer.flush().await?;
                writer.close_epoch(epoch);
                Ok(())
            }
        }
    }

    /// The checkpoint of `completed` is stored: a repartition topic's writer sends what it
    /// held for it.
    pub async fn commit(&mut self, completed: u64) -> Result<(), JobError> {
        match self {
            NextStage::Local(_) => Ok(()),
            NextStage::Topic { writer, .. } => writer.commit(completed).await,
        }
    }

    /// After the snapshot: the barrier goes on to the second stage in this process.
    pub async fn barrier(&mut self, epoch: u64) -> Result<(), JobError> {
        match self {
            NextStage::Local(input) => {
                let barrier = CheckpointBarrier { epoch };
                input.send_each(&Message::Barrier(barrier)).await
            }
            NextStage::Topic { .. } => Ok(()),
        }
    }

    /// The first stage's input ended at `watermark` (`stopped`, or read to its end): at +∞, a
    /// repartition topic's readers are told this origin ended.
    pub async fn end(&mut self, watermark: i64, stopped: bool) -> Result<(), JobError> {
        match self {
            NextStage::Local(input) => input.send_each(&Message::EndOfInput { stopped }).await,
            NextStage::Topic { writer, .. } => {
                writer.send_pending_watermark().await?;
                if watermark == i64::MAX {
                    writer.send_end().await?;
                }
                Ok(())
            }
        }
    }

    /// After [`Self::end`] and the last checkpoint's commit: a repartition topic's writer
    /// sends what it still holds and waits until the broker has everything.
    pub async fn finish(&mut self) -> Result<(), JobError> {
        match self {
            NextStage::Local(_) => Ok(()),
            NextStage::Topic { writer, .. } => writer.finish().await,
        }
    }
}

/// The subtask (of `subtasks`) that owns each of `rows` rows whose key is `keys`.
pub fn owners(
    keys: &[ArrayRef],
    rows: usize,
    key_groups: u32,
    subtasks: usize,
) -> Result<Vec<usize>, JobError> {
    let key_groups = key_groups.max(1);
    Ok(key_hashes(keys, rows)?
        .into_iter()
        .map(|h| subtask_of(h % key_groups, key_groups, subtasks))
        .collect())
}

/// The subtask (of `subtasks`) that owns `key_group` (of `key_groups`): Flink's
/// `keyGroup * parallelism / maxParallelism`, so each owns one contiguous range.
pub fn subtask_of(key_group: u32, key_groups: u32, subtasks: usize) -> usize {
    (u64::from(key_group) * subtasks as u64 / u64::from(key_groups)) as usize
}

/// One hash per row over the key columns.
fn key_hashes(keys: &[ArrayRef], rows: usize) -> Result<Vec<u32>, JobError> {
    let mut hashes = vec![0u32; rows];
    for column in keys {
        let hasher = |i: usize, bytes: &[u8], h: &mut u32| {
            let mut c = crc32fast::Hasher::new_with_initial(*h);
            c.update(bytes);
            // A NULL differs from every value, an empty string included.
            c.update(&[column.is_valid(i) as u8]);
            *h = c.finalize();
        };
        match column.data_type() {
            DataType::Utf8 => {
                let a = column.as_string::<i32>();
                for (i, h) in hashes.iter_mut().enumerate() {
                    hasher(i, a.value(i).as_bytes(), h);
                }
            }
            DataType::LargeUtf8 => {
                let a = column.as_string::<i64>();
                for (i, h) in hashes.iter_mut().enumerate() {
                    hasher(i, a.value(i).as_bytes(), h);
                }
            }
            DataType::Utf8View => {
                let a = column.as_string_view();
                for (i, h) in hashes.iter_mut().enumerate() {
                    hasher(i, a.value(i).as_bytes(), h);
                }
            }
            // Fixed-width values (numbers, dates, times): their bytes.
            t if t.is_primitive() => {
                let data = column.to_data();
                let width = t.primitive_width().unwrap_or(1);
                let buffer = &data.buffers()[0].as_slice()[data.offset() * width..];
                for (i, h) in hashes.iter_mut().enumerate() {
                    hasher(i, &buffer[i * width..(i + 1) * width], h);
                }
            }
            // Anything else by its row encoding.
            t => {
                let converter = RowConverter::new(vec![SortField::new(t.clone())])?;
                let encoded = converter.convert_columns(&[Arc::clone(column)])?;
                for (i, h) in hashes.iter_mut().enumerate() {
                    hasher(i, encoded.row(i).as_ref(), h);
                }
            }
        }
    }
    Ok(hashes.into_iter().map(fmix32).collect())
}

/// Murmur3's finalizer: spreads CRC's bits so key groups fill evenly.
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn batch() -> RecordBatch {
        let vehicles: Vec<String> = (0..200).map(|i| format!("V{:04}", i % 50)).collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("vehicle", DataType::Utf8, true),
                Field::new("n", DataType::Int64, false),
            ])),
            vec![
                Arc::new(StringArray::from(vehicles)),
                Arc::new(Int64Array::from_iter_values(0..200)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn every_row_goes_to_exactly_one_subtask_and_a_key_always_to_the_same() {
        let b = batch();
        let parts = KeyRouter::new(vec![0], 3, 128).split(&b).unwrap();
        let mut owner: std::collections::HashMap<String, usize> = Default::default();
        let mut rows = 0;
        for (k, part) in parts.iter().enumerate() {
            let Some(part) = part else { continue };
            rows += part.num_rows();
            let v = part.column(0).as_string::<i32>();
            for i in 0..part.num_rows() {
                let prev = owner.insert(v.value(i).to_string(), k);
                assert!(
                    prev.is_none_or(|p| p == k),
                    "{} in two subtasks",
                    v.value(i)
                );
            }
        }
        assert_eq!(rows, 200);
        assert_eq!(owner.len(), 50);
        // 50 keys over 3 subtasks: each gets some.
        assert!(parts.iter().all(Option::is_some));
    }

    #[test]
    fn the_hash_is_fixed_across_builds() {
        // Checkpoints depend on these: a key must land in the same key group forever.
        let keys: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec!["V0001", "V0002"]))];
        let h = key_hashes(&keys, 2).unwrap();
        assert_eq!((h[0] % 128, h[1] % 128), (FIXED[0], FIXED[1]));
    }

    /// The key groups of "V0001" and "V0002" at 128 key groups, as first computed.
    const FIXED: [u32; 2] = [114, 19];

    #[test]
    fn key_groups_are_owned_in_contiguous_ranges() {
        let owners: Vec<usize> = (0..128).map(|g| subtask_of(g, 128, 3)).collect();
        assert!(owners.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!((owners[0], owners[127]), (0, 2));
        assert_eq!(owners.iter().filter(|&&o| o == 1).count(), 43);
    }
}
