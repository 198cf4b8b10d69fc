//! An upsert stream made a changelog, as Flink's `ChangelogNormalize`: an `upsert-kafka` topic
//! carries, per key, the key's new row (an upsert) or a tombstone (a delete with only the key).
//! Keeping each key's current row turns them into what downstream operators take back and add:
//! `+I` a key's first row, `-U` its old row and `+U` the new one for each upsert that changes it,
//! `-D` the old row for a tombstone. An upsert equal to the current row, and a tombstone of a key
//! without a row, change nothing. The state is one row per live key.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::row::OwnedRow;
use datafusion::physical_expr::PhysicalExpr;

use crate::operators::evaluate::Keys;
use crate::operators::snapshot;
use crate::stream::changelog::{
    RowKind, kinds_column, row_kinds, with_kinds, with_kinds_column, without_kinds,
};
use crate::stream::{JobError, Operator};

pub struct ChangelogNormalize {
    keys: Keys,
    /// The rows' columns, without the row kind.
    rows: SchemaRef,
    schema: SchemaRef,
    current: HashMap<OwnedRow, RecordBatch>,
}

impl ChangelogNormalize {
    /// Keyed by `keys` (the PRIMARY KEY) over rows of `rows` (no row-kind column).
    pub fn new(keys: Vec<Arc<dyn PhysicalExpr>>, rows: SchemaRef) -> Result<Self, JobError> {
        Ok(ChangelogNormalize {
            keys: Keys::new(keys, &rows)?,
            schema: with_kinds(&rows),
            rows,
            current: HashMap::new(),
        })
    }
}

impl Operator for ChangelogNormalize {
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        Some(self.keys.input_columns())
    }

    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        (column < self.rows.fields().len()).then_some(column)
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(ChangelogNormalize {
            keys: self.keys.clone(),
            rows: self.rows.clone(),
            schema: self.schema.clone(),
            current: HashMap::new(),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "upserts to a changelog by {} key column(s) (the last row per key kept)",
            self.keys.len()
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let kinds = row_kinds(&batch);
        let rows =
            RecordBatch::try_new(self.rows.clone(), without_kinds(&batch).columns().to_vec())?;
        let keys = self.keys.rows(&rows)?;
        let mut changed: Vec<RecordBatch> = Vec::new();
        let mut changes: Vec<RowKind> = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            let key = keys.row(i).owned();
            if kind.is_retraction() {
                if let Some(old) = self.current.remove(&key) {
                    changed.push(old);
                    changes.push(RowKind::Delete);
                }
                continue;
            }
            let row = rows.slice(i, 1);
            match self.current.insert(key, row.clone()) {
                None => {
                    changed.push(row);
                    changes.push(RowKind::Insert);
                }
                Some(old) if old == row => {}
                Some(old) => {
                    changed.extend([old, row]);
                    changes.extend([RowKind::UpdateBefore, RowKind::UpdateAfter]);
                }
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let all = concat_batches(&self.rows, &changed)?;
        out.push(with_kinds_column(&all, kinds_column(changes))?);
        Ok(())
    }

    fn buffered_rows(&self) -> u64 {
        self.current.len() as u64
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("changelog-normalize")
    }

    /// Every key's current row.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let rows = concat_batches(&self.rows, self.current.values())?;
        let metadata = snapshot::keyed_rows(0, &self.rows).into_iter().collect();
        Ok(Some(snapshot::encode(&self.rows, metadata, &[rows])?))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        self.current.clear();
        for b in snapshot::decode(bytes)?.1 {
            let b = RecordBatch::try_new(self.rows.clone(), b.columns().to_vec())?;
            let keys = self.keys.rows(&b)?;
            for i in 0..b.num_rows() {
                self.current.insert(keys.row(i).owned(), b.slice(i, 1));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::{Harness, col, lines, schema};

    #[test]
    fn upserts_and_tombstones_become_a_changelog() {
        let rows = schema("k:str v:i64");
        let new = || ChangelogNormalize::new(vec![col("k", &rows)], rows.clone()).unwrap();
        let mut h = Harness::new(new());
        // Kinds: 0 +I, 1 -U, 2 +U, 3 -D.
        h.push("k:str v:i64 __op:op\na 1 +U\nb 2 +U\na 3 +U\na 3 +U");
        assert_eq!(h.take(), lines("a 1 0\nb 2 0\na 1 1\na 3 2"));
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = Harness::new(new());
        restored.op.restore(&bytes).unwrap();
        for h in [&mut h, &mut restored] {
            // A tombstone carries only the key: the old row is what is deleted.
            h.push("k:str v:i64 __op:op\nb null -D\nz null -D\nb 5 +U");
            assert_eq!(h.take(), lines("b 2 3\nb 5 0"));
        }
    }
}
