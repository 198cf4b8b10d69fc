//! Join planning: a stream joined with a bounded table becomes a [`LookupJoin`]. The bounded
//! side — a filesystem table without WATERMARK, optionally filtered and projected — is read
//! whole while planning (so a missing or broken file fails the job before it starts) and
//! evaluated with the same physical expressions as a stream; the stream side compiles as usual.
//! Joins of two streams (interval and temporal joins) are not planned yet and say so.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::Schema;
use datafusion::common::DFSchemaRef;
use datafusion::logical_expr::{Join, JoinType, LogicalPlan};

use super::{CompiledStream, ExprCompiler, JobBuilder, Planner};
use crate::connectors::ConnectorConfig;
use crate::connectors::filesystem::read_all;
use crate::operators::window::evaluate_all;
use crate::operators::{LookupJoin, LookupJoinSpec, evaluate_predicate};
use crate::sql::catalog::Table;
use crate::sql::error::{Position, SourceText, SqlError};

impl Planner {
    pub(super) fn compile_join(
        &self,
        src: &SourceText,
        join: &Join,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        let (stream, lookup, table, stream_first) = if let Some(t) = self.lookup_table(&join.right)
        {
            (&join.left, &join.right, t, true)
        } else if let Some(t) = self.lookup_table(&join.left) {
            (&join.right, &join.left, t, false)
        } else {
            return Err(src.error(
                pos,
                "a JOIN needs one side to be a bounded table (a filesystem table without WATERMARK) to look rows up in; joins of two streams (interval and temporal joins) are not supported yet",
            ));
        };
        let keep_unmatched = match (join.join_type, stream_first) {
            (JoinType::Inner, _) => false,
            (JoinType::Left, true) | (JoinType::Right, false) => true,
            (other, _) => {
                return Err(src.error(
                    pos,
                    format!(
                        "{other} JOIN with a lookup table is not supported (INNER, and LEFT or RIGHT JOIN keeping every row of the stream, are)"
                    ),
                ));
            }
        };
        let exprs = self.expr_compiler(src, pos, job);
        let rows = self.lookup_rows(src, lookup, table, &exprs, pos)?;
        let mut s = self.compile(src, stream, pos, job)?;
        s.check_complete(src, pos)?;
        let keys = join
            .on
            .iter()
            .map(|(left, right)| {
                let (stream_key, table_key) = if stream_first {
                    (left, right)
                } else {
                    (right, left)
                };
                Ok((
                    exprs.compile(stream_key, stream.schema())?,
                    exprs.compile(table_key, lookup.schema())?,
                ))
            })
            .collect::<Result<Vec<_>, SqlError>>()?;
        let condition = join
            .filter
            .as_ref()
            .map(|f| exprs.compile(f, &join.schema))
            .transpose()?;
        let operator = LookupJoin::new(LookupJoinSpec {
            table_name: table.name.clone(),
            table: rows,
            keys,
            condition,
            keep_unmatched,
            stream_first,
            schema: Arc::new(join.schema.as_arrow().clone()),
        })
        .map_err(|e| src.error(pos, e.to_string()))?;
        s.operators.push(Box::new(operator));
        s.schema = join.schema.clone();
        Ok(s)
    }

    /// The bounded table a lookup side reads, when `plan` only filters and projects one.
    fn lookup_table(&self, plan: &LogicalPlan) -> Option<&Arc<Table>> {
        match plan {
            LogicalPlan::TableScan(scan) => self
                .tables
                .get(scan.table_name.table())
                .filter(|t| t.watermark.is_none() && t.metadata.is_empty())
                .filter(|t| matches!(t.connector, ConnectorConfig::Filesystem(_))),
            LogicalPlan::Filter(f) => self.lookup_table(&f.input),
            LogicalPlan::Projection(p) => self.lookup_table(&p.input),
            LogicalPlan::SubqueryAlias(a) => self.lookup_table(&a.input),
            _ => None,
        }
    }

    /// The rows of a lookup side over `table`: the table read whole, then the side's filters and
    /// projections.
    fn lookup_rows(
        &self,
        src: &SourceText,
        plan: &LogicalPlan,
        table: &Table,
        exprs: &ExprCompiler<'_>,
        pos: Position,
    ) -> Result<RecordBatch, SqlError> {
        let fail = |e: &dyn std::fmt::Display| src.error(pos, e.to_string());
        let batch = match plan {
            LogicalPlan::TableScan(scan) => {
                let ConnectorConfig::Filesystem(config) = &table.connector else {
                    unreachable!("lookup tables are filesystem tables")
                };
                let (batches, skipped) = read_all(config)
                    .map_err(|e| fail(&format!("reading lookup table `{}`: {e}", table.name)))?;
                if skipped > 0 {
                    tracing::warn!(
                        "lookup table `{}`: {skipped} bad records skipped",
                        table.name
                    );
                }
                let rows = batches
                    .iter()
                    .map(|b| table_rows(table, b))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| fail(&e))?;
                let all = concat_batches(&table.row_schema, &rows).map_err(|e| fail(&e))?;
                let projected = match &scan.projection {
                    Some(indices) => all.project(indices).map_err(|e| fail(&e))?,
                    None => all,
                };
                let mut batch =
                    with_schema(projected, &scan.projected_schema).map_err(|e| fail(&e))?;
                for f in &scan.filters {
                    batch = filtered(batch, &exprs.compile(f, &scan.projected_schema)?)
                        .map_err(|e| fail(&e))?;
                }
                batch
            }
            LogicalPlan::Filter(f) => {
                let input = self.lookup_rows(src, &f.input, table, exprs, pos)?;
                filtered(input, &exprs.compile(&f.predicate, f.input.schema())?)
                    .map_err(|e| fail(&e))?
            }
            LogicalPlan::Projection(p) => {
                let input = self.lookup_rows(src, &p.input, table, exprs, pos)?;
                let columns = p
                    .expr
                    .iter()
                    .map(|e| exprs.compile(e, p.input.schema()))
                    .collect::<Result<Vec<_>, _>>()?;
                let values = evaluate_all(&columns, &input).map_err(|e| fail(&e))?;
                RecordBatch::try_new(Arc::new(p.schema.as_arrow().clone()), values)
                    .map_err(|e| fail(&e))?
            }
            LogicalPlan::SubqueryAlias(a) => {
                let input = self.lookup_rows(src, &a.input, table, exprs, pos)?;
                with_schema(input, &a.schema).map_err(|e| fail(&e))?
            }
            other => {
                return Err(src.error(
                    pos,
                    format!("the lookup side of a JOIN may only filter and project its table, not {other}"),
                ));
            }
        };
        Ok(batch)
    }
}

/// A decoded file batch as the table's rows (computed columns evaluated).
fn table_rows(table: &Table, batch: &RecordBatch) -> Result<RecordBatch, crate::runtime::JobError> {
    if table.row_is_scan() {
        return Ok(RecordBatch::try_new(
            table.row_schema.clone(),
            batch.columns().to_vec(),
        )?);
    }
    let columns = evaluate_all(&table.row_exprs, batch)?;
    Ok(RecordBatch::try_new(table.row_schema.clone(), columns)?)
}

/// The same columns under the plan node's schema (qualified names, nullability).
fn with_schema(
    batch: RecordBatch,
    schema: &DFSchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema: Schema = schema.as_arrow().clone();
    RecordBatch::try_new(Arc::new(schema), batch.columns().to_vec())
}

fn filtered(
    batch: RecordBatch,
    predicate: &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
) -> Result<RecordBatch, crate::runtime::JobError> {
    let mask = evaluate_predicate(predicate, &batch)?;
    Ok(filter_record_batch(&batch, &mask)?)
}
