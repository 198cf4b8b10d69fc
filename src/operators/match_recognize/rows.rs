//! The rows MATCH_RECOGNIZE keeps: released (sorted) batches held as chunks, each freed once no
//! partition needs any of its rows.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow::compute::interleave;
use arrow::datatypes::SchemaRef;

use crate::stream::JobError;

/// A row of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLoc {
    pub chunk: u32,
    pub row: u32,
}

struct Chunk {
    batch: RecordBatch,
    /// Rows some partition still holds.
    live: usize,
}

#[derive(Default)]
pub struct RowStore {
    chunks: Vec<Option<Chunk>>,
    free: Vec<u32>,
    /// Rows held by partitions.
    rows: usize,
    /// Rows in live chunks, held or not.
    allocated: usize,
}

/// Compaction pays off once this many rows sit in chunks without being held.
const COMPACT_SLACK: usize = 16 * 1024;

impl RowStore {
    /// Adds a batch whose every row is held by some partition; returns its chunk id.
    pub fn add(&mut self, batch: RecordBatch) -> u32 {
        let chunk = Chunk {
            live: batch.num_rows(),
            batch,
        };
        self.rows += chunk.live;
        self.allocated += chunk.live;
        match self.free.pop() {
            Some(id) => {
                self.chunks[id as usize] = Some(chunk);
                id
            }
            None => {
                self.chunks.push(Some(chunk));
                (self.chunks.len() - 1) as u32
            }
        }
    }

    /// A partition no longer needs the row: its chunk is dropped with its last live row.
    pub fn release(&mut self, loc: RowLoc) {
        let slot = &mut self.chunks[loc.chunk as usize];
        let chunk = slot.as_mut().expect("released rows belong to a live chunk");
        chunk.live -= 1;
        self.rows -= 1;
        if chunk.live == 0 {
            self.allocated -= chunk.batch.num_rows();
            *slot = None;
            self.free.push(loc.chunk);
        }
    }

    /// Whether chunks hold many more rows than partitions do: a few rows of a long match keep
    /// whole chunks alive, and copying the held rows out frees them.
    pub fn wants_compaction(&self) -> bool {
        self.allocated > 2 * self.rows + COMPACT_SLACK
    }

    /// Copies the held rows `locs` into one new chunk and drops every other chunk; returns the
    /// rows' new places, in order. `locs` must be every held row.
    pub fn compact(
        &mut self,
        locs: &[RowLoc],
        schema: &SchemaRef,
    ) -> Result<Vec<RowLoc>, JobError> {
        debug_assert_eq!(locs.len(), self.rows);
        let some: Vec<Option<RowLoc>> = locs.iter().map(|&l| Some(l)).collect();
        let batch = RecordBatch::try_new(schema.clone(), self.gather_rows(&some, schema)?)?;
        *self = RowStore::default();
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let chunk = self.add(batch);
        Ok((0..locs.len() as u32)
            .map(|row| RowLoc { chunk, row })
            .collect())
    }

    /// Rows held by partitions.
    pub fn held_rows(&self) -> usize {
        self.rows
    }

    pub fn batch(&self, chunk: u32) -> &RecordBatch {
        &self.chunks[chunk as usize]
            .as_ref()
            .expect("rows of a live chunk")
            .batch
    }

    /// Column `column` of the rows at `locs` (NULL where `None`), as one array.
    pub fn gather(
        &self,
        locs: &[Option<RowLoc>],
        column: usize,
        schema: &SchemaRef,
    ) -> Result<ArrayRef, JobError> {
        let nulls = new_null_array(schema.field(column).data_type(), 1);
        let mut sources: Vec<&dyn Array> = vec![nulls.as_ref()];
        let mut slot_of: HashMap<u32, usize> = HashMap::new();
        let indices: Vec<(usize, usize)> = locs
            .iter()
            .map(|l| match l {
                None => (0, 0),
                Some(l) => {
                    let slot = *slot_of.entry(l.chunk).or_insert_with(|| {
                        sources.push(self.batch(l.chunk).column(column).as_ref());
                        sources.len() - 1
                    });
                    (slot, l.row as usize)
                }
            })
            .collect();
        Ok(interleave(&sources, &indices)?)
    }

    /// The rows at `locs` with every column of `schema`.
    pub fn gather_rows(
        &self,
        locs: &[Option<RowLoc>],
        schema: &SchemaRef,
    ) -> Result<Vec<ArrayRef>, JobError> {
        (0..schema.fields().len())
            .map(|c| self.gather(locs, c, schema))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    #[test]
    fn chunks_are_freed_with_their_last_row_and_compaction_keeps_held_rows() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let mut store = RowStore::default();
        let mut held = Vec::new();
        for c in 0..10i64 {
            let values: Vec<i64> = (0..10_000).map(|i| c * 10_000 + i).collect();
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                    .unwrap();
            let chunk = store.add(batch);
            // Keep one row in ten of every chunk.
            for row in 0..10_000u32 {
                let loc = RowLoc { chunk, row };
                if row % 10 == 0 {
                    held.push(loc);
                } else {
                    store.release(loc);
                }
            }
        }
        assert_eq!(store.held_rows(), 10_000);
        assert!(store.wants_compaction());
        let moved = store.compact(&held, &schema).unwrap();
        assert!(!store.wants_compaction());
        assert_eq!(store.held_rows(), 10_000);
        let values = store
            .gather(
                &moved.iter().map(|&l| Some(l)).collect::<Vec<_>>(),
                0,
                &schema,
            )
            .unwrap();
        let values = values.as_primitive::<Int64Type>();
        assert_eq!(values.value(0), 0);
        assert_eq!(values.value(1), 10);
        assert_eq!(values.value(9_999), 99_990);
        // A chunk goes once its last held row is released.
        for loc in moved {
            store.release(loc);
        }
        assert_eq!(store.held_rows(), 0);
        assert!(store.chunks.iter().all(Option::is_none));
    }
}
