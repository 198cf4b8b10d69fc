//! `UNION ALL`: the rows of every branch, as they come, under the union's column names and
//! types (the planner unifies the branches' types; a branch whose type differs is cast). It keeps
//! no state and holds nothing back. Its watermark is its pipeline's: the branches read one input.

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;

use crate::stream::{JobError, Operator};

#[derive(Clone)]
pub struct UnionAll {
    schema: SchemaRef,
    branches: usize,
}

impl UnionAll {
    pub fn new(schema: SchemaRef, branches: usize) -> Self {
        UnionAll { schema, branches }
    }
}

impl Operator for UnionAll {
    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        Some(column)
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(self.clone()))
    }

    fn describe(&self) -> String {
        format!("UNION ALL of {} branches", self.branches)
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    cast(c, f.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| JobError::internal(format!("UNION ALL: {e}")))?;
        out.push(
            RecordBatch::try_new(self.schema.clone(), columns)
                .map_err(|e| JobError::internal(format!("UNION ALL: {e}")))?,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::logical_expr::Operator as Op;
    use datafusion::physical_expr::expressions::{BinaryExpr, lit};

    use super::*;
    use crate::operators::testing::{col, format, rows, schema};
    use crate::operators::{Filter, FusedOperators, Operators};

    /// Two branches over one input — both see every row — meet in the union, which casts to its
    /// column types.
    #[test]
    fn every_branch_sees_the_input_and_the_union_passes_both_on() {
        let input = rows(
            "k:str v:i64
             a     1
             b     2",
        );
        let source = input.schema();
        let above_one = Arc::new(BinaryExpr::new(col("v", &source), Op::Gt, lit(1i64)));
        let filtered: Operators =
            vec![Box::new(Filter::new(above_one, source.clone())) as Box<dyn Operator>].into();
        let union = UnionAll::new(schema("key:str n:f64"), 2);
        let ops = Operators::merge(vec![Operators::reading(0), filtered], Box::new(union));
        assert!(!ops.is_chain());
        let mut fused = FusedOperators::new(ops);
        let got = format(&fused.process_batch(input).unwrap());
        assert_eq!(got, ["a 1.0", "b 2.0", "b 2.0"]);
        assert_eq!(fused.operators()[1].output_schema().field(1).name(), "n");
    }
}
