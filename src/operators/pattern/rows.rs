//! The rows MATCH_RECOGNIZE keeps: released (sorted) batches held as chunks, each freed once no
//! partition needs any of its rows.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow::compute::interleave;
use arrow::datatypes::SchemaRef;

use crate::runtime::JobError;

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
    rows: usize,
}

impl RowStore {
    /// Adds a batch whose every row is held by some partition; returns its chunk id.
    pub fn add(&mut self, batch: RecordBatch) -> u32 {
        let chunk = Chunk {
            live: batch.num_rows(),
            batch,
        };
        self.rows += chunk.live;
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
            *slot = None;
            self.free.push(loc.chunk);
        }
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
