//! Evaluating compiled DataFusion expressions over a batch: the one place every operator turns
//! `PhysicalExpr`s into arrays (projections, filters, join conditions, aggregate arguments).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::Schema;
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::stream::JobError;

/// Evaluates expressions over a batch into arrays of its length.
pub fn evaluate_all(
    exprs: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>, JobError> {
    Ok(exprs
        .iter()
        .map(|e| {
            e.evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()))
        })
        .collect::<Result<Vec<_>, _>>()?)
}

/// A converter of `keys` (expressions over `input`) to comparable, hashable rows: how keyed
/// operators group rows.
pub fn key_converter(
    keys: &[Arc<dyn PhysicalExpr>],
    input: &Schema,
) -> Result<RowConverter, JobError> {
    let fields = keys
        .iter()
        .map(|e| Ok(SortField::new(e.data_type(input)?)))
        .collect::<Result<Vec<_>, JobError>>()?;
    Ok(RowConverter::new(fields)?)
}

/// A boolean expression evaluated on a batch, as a mask for arrow's filter kernels (which drop
/// NULL as well as false).
pub fn evaluate_predicate(
    predicate: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<BooleanArray, JobError> {
    let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
    match mask.as_boolean_opt() {
        Some(mask) => Ok(mask.clone()),
        None => Err(JobError::internal(format!(
            "predicate {predicate} is not boolean but {}",
            mask.data_type()
        ))),
    }
}
