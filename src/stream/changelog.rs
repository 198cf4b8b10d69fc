//! Changelogs. A stream whose rows may later be updated or deleted (an aggregate without a
//! window, keep-last deduplication) carries each row's kind — Flink's RowKind: `+I`, `-U`, `+U`,
//! `-D` — in a last column named [`OP_COLUMN`]. Batches stay plain Arrow: filters and
//! projections pass the column on like any other, and a sink that takes changes reads it.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int8Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};

/// The row-kind column's name (never a user's: SQL does not see it).
pub const OP_COLUMN: &str = "__op";

/// What a row of a changelog does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowKind {
    Insert,
    /// The old row of an update: it is withdrawn.
    UpdateBefore,
    /// The new row of an update.
    UpdateAfter,
    Delete,
}

impl RowKind {
    pub fn code(self) -> i8 {
        match self {
            RowKind::Insert => 0,
            RowKind::UpdateBefore => 1,
            RowKind::UpdateAfter => 2,
            RowKind::Delete => 3,
        }
    }

    pub fn from_code(code: i8) -> RowKind {
        match code {
            1 => RowKind::UpdateBefore,
            2 => RowKind::UpdateAfter,
            3 => RowKind::Delete,
            _ => RowKind::Insert,
        }
    }

    /// As Flink prints it.
    pub fn symbol(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// Whether the row takes something back (`-U`, `-D`) rather than adding it.
    pub fn is_retraction(self) -> bool {
        matches!(self, RowKind::UpdateBefore | RowKind::Delete)
    }
}

/// Whether batches of `schema` carry row kinds.
pub fn is_changelog(schema: &Schema) -> bool {
    schema
        .fields()
        .last()
        .is_some_and(|f| f.name() == OP_COLUMN)
}

/// `schema` with the row-kind column after its columns.
pub fn with_kinds(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
    Arc::new(Schema::new(fields))
}

/// The row-kind column for these kinds.
pub fn kinds_column(kinds: impl IntoIterator<Item = RowKind>) -> ArrayRef {
    Arc::new(Int8Array::from_iter_values(
        kinds.into_iter().map(RowKind::code),
    ))
}

/// `rows` with `kinds` (a row-kind column, see [`kinds_column`]) after its columns.
pub fn with_kinds_column(
    rows: &RecordBatch,
    kinds: ArrayRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut columns = rows.columns().to_vec();
    columns.push(kinds);
    RecordBatch::try_new(with_kinds(&rows.schema()), columns)
}

/// Each row's kind: from the row-kind column, or `+I` for every row of an append-only batch.
pub fn row_kinds(batch: &RecordBatch) -> Vec<RowKind> {
    if is_changelog(&batch.schema()) {
        let column = batch.column(batch.num_columns() - 1);
        column
            .as_primitive::<Int8Type>()
            .values()
            .iter()
            .map(|c| RowKind::from_code(*c))
            .collect()
    } else {
        vec![RowKind::Insert; batch.num_rows()]
    }
}

/// The batch without its row-kind column (if it has one).
pub fn without_kinds(batch: &RecordBatch) -> RecordBatch {
    if is_changelog(&batch.schema()) {
        batch
            .project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())
            .expect("in range")
    } else {
        batch.clone()
    }
}
