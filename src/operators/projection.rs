//! Projection: computes the output columns as DataFusion expressions over the input batch
//! (column references are zero-copy).

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use crate::stream::JobError;
use crate::stream::Operator;

#[derive(Clone)]
pub struct Projection {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Projection {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        Projection { exprs, schema }
    }

    /// Evaluates the projection on one batch.
    pub fn project(&self, batch: &RecordBatch) -> Result<RecordBatch, JobError> {
        let rows = batch.num_rows();
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(rows)))
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

impl Operator for Projection {
    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        self.exprs[column]
            .downcast_ref::<datafusion::physical_expr::expressions::Column>()
            .map(|c| c.index())
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(self.clone()))
    }

    fn describe(&self) -> String {
        let cols: Vec<String> = self
            .exprs
            .iter()
            .zip(self.schema.fields())
            .map(|(e, f)| {
                let e = e.to_string();
                let plain = e.split('@').next().unwrap_or(&e);
                if plain == f.name() {
                    f.name().clone()
                } else {
                    format!("{e} AS {}", f.name())
                }
            })
            .collect();
        format!("Project: {}", cols.join(", "))
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        out.push(self.project(&batch)?);
        Ok(())
    }
}
