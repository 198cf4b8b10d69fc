//! Filter: keeps the rows for which a boolean DataFusion expression is true (NULL counts as
//! false, as in SQL). Evaluated once per batch, vectorized; empty results are not forwarded.

use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::Operator;
use crate::runtime::JobError;

pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
    schema: SchemaRef,
}

impl Filter {
    pub fn new(predicate: Arc<dyn PhysicalExpr>, schema: SchemaRef) -> Self {
        Filter { predicate, schema }
    }
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

impl Operator for Filter {
    fn describe(&self) -> String {
        format!("Filter: {}", self.predicate)
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let mask = evaluate_predicate(&self.predicate, &batch)?;
        let kept = filter_record_batch(&batch, &mask)?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
        Ok(())
    }
}
