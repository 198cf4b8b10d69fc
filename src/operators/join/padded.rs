//! Joined rows as batches: the left side's columns, then the right's; an outer join's row
//! without a partner has NULLs for the other side.

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::SchemaRef;

use crate::stream::JobError;

/// A joined batch of `schema` from each side's columns.
pub fn joined(
    schema: &SchemaRef,
    left: Vec<ArrayRef>,
    right: Vec<ArrayRef>,
) -> Result<RecordBatch, JobError> {
    Ok(RecordBatch::try_new(
        schema.clone(),
        left.into_iter().chain(right).collect(),
    )?)
}

/// `n` NULLs in each column of `side`.
pub fn null_columns(side: &SchemaRef, n: usize) -> Vec<ArrayRef> {
    side.fields()
        .iter()
        .map(|f| new_null_array(f.data_type(), n))
        .collect()
}
