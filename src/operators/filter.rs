//! Filter: keeps the rows for which a boolean DataFusion expression is true (NULL counts as
//! false, as in SQL). Evaluated once per batch, vectorized; empty results are not forwarded.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::evaluate::evaluate_predicate;
use crate::stream::{JobError, Operator};

#[derive(Clone)]
pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
    schema: SchemaRef,
}

impl Filter {
    pub fn new(predicate: Arc<dyn PhysicalExpr>, schema: SchemaRef) -> Self {
        Filter { predicate, schema }
    }
}

impl Operator for Filter {
    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        Some(column)
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(self.clone()))
    }

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
