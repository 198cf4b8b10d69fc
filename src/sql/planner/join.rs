//! Join planning: a stream joined with a bounded table becomes a [`LookupJoin`]. The bounded
//! side — a filesystem table without WATERMARK, optionally filtered and projected — becomes a
//! reader and ordinary filter and projection operators, run when the job starts (planning
//! reads no data: `sluice validate` and `explain` work without the file); the stream side
//! compiles as usual.
//! Joins of two streams go to [`super::stream_join`].

use std::sync::Arc;

use datafusion::logical_expr::{Join, JoinType, LogicalPlan};

use super::{CompiledStream, ExprCompiler, JobBuilder, Planner, column_selection};
use crate::connectors::ConnectorConfig;
use crate::connectors::filesystem::read_all;
use crate::operators::join::{LoadTable, LookupJoin, LookupJoinSpec, LookupTable};
use crate::operators::{Filter, Projection};
use crate::sql::ast::TemporalRef;
use crate::sql::catalog::Table;
use crate::sql::error::{Position, SourceText, SqlError};
use crate::stream::Operator;

impl Planner {
    pub(super) fn compile_join(
        &self,
        src: &SourceText,
        join: &Join,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        // `FOR SYSTEM_TIME AS OF` a versioned table; of a bounded table it is a lookup join
        // (Flink's lookup syntax), handled below.
        if let Some(temporal) = self.temporal_ref(&join.right)
            && self.lookup_table(&join.right).is_none()
        {
            return self.compile_temporal_join(src, join, temporal, pos, job);
        }
        let (stream, lookup, table, stream_first) = if let Some(t) = self.lookup_table(&join.right)
        {
            (&join.left, &join.right, t, true)
        } else if let Some(t) = self.lookup_table(&join.left) {
            (&join.right, &join.left, t, false)
        } else {
            return self.compile_stream_join(src, join, pos, job);
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
        let mut side = Vec::new();
        self.lookup_operators(src, lookup, table, &exprs, pos, &mut side)?;
        let mut s = self.compile(src, stream, pos, job)?;
        s.check_complete(src, pos)?;
        s.require_append_only(src, pos, "a lookup join")?;
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
            table: LookupTable {
                name: table.name.clone(),
                load: load_file_table(table),
                operators: side,
                schema: Arc::new(lookup.schema().as_arrow().clone()),
            },
            keys,
            condition,
            keep_unmatched,
            stream_first,
            schema: Arc::new(join.schema.as_arrow().clone()),
        });
        s.operators.push(Box::new(operator));
        s.schema = join.schema.clone();
        Ok(s)
    }

    /// The `FOR SYSTEM_TIME AS OF` clause of the relation `plan` reads, if it has one.
    fn temporal_ref(&self, plan: &LogicalPlan) -> Option<&TemporalRef> {
        let name = match plan {
            LogicalPlan::SubqueryAlias(a) => a.alias.table().to_string(),
            LogicalPlan::TableScan(scan) => scan.table_name.table().to_string(),
            _ => return None,
        };
        self.temporal.iter().find(|t| t.relation == name)
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

    /// The lookup side as operators over the table's rows, as read when the job starts: its
    /// computed columns, then the side's filters and projections in plan order.
    fn lookup_operators(
        &self,
        src: &SourceText,
        plan: &LogicalPlan,
        table: &Table,
        exprs: &ExprCompiler<'_>,
        pos: Position,
        operators: &mut Vec<Box<dyn Operator>>,
    ) -> Result<(), SqlError> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                if !table.row_is_scan() {
                    operators.push(Box::new(Projection::new(
                        table.row_exprs.clone(),
                        table.row_schema.clone(),
                    )));
                }
                let selection = scan.projection.as_ref().and_then(|indices| {
                    column_selection(indices, &table.row_schema, &scan.projected_schema, false)
                });
                operators.extend(selection);
                for f in &scan.filters {
                    let predicate = exprs.compile(f, &scan.projected_schema)?;
                    operators.push(Box::new(Filter::new(
                        predicate,
                        Arc::new(scan.projected_schema.as_arrow().clone()),
                    )));
                }
            }
            LogicalPlan::Filter(f) => {
                self.lookup_operators(src, &f.input, table, exprs, pos, operators)?;
                let predicate = exprs.compile(&f.predicate, f.input.schema())?;
                operators.push(Box::new(Filter::new(
                    predicate,
                    Arc::new(f.input.schema().as_arrow().clone()),
                )));
            }
            LogicalPlan::Projection(p) => {
                self.lookup_operators(src, &p.input, table, exprs, pos, operators)?;
                let columns = p
                    .expr
                    .iter()
                    .map(|e| exprs.compile(e, p.input.schema()))
                    .collect::<Result<Vec<_>, _>>()?;
                operators.push(Box::new(Projection::new(
                    columns,
                    Arc::new(p.schema.as_arrow().clone()),
                )));
            }
            LogicalPlan::SubqueryAlias(a) => {
                self.lookup_operators(src, &a.input, table, exprs, pos, operators)?
            }
            other => {
                return Err(src.error(
                    pos,
                    format!("the lookup side of a JOIN may only filter and project its table, not {other}"),
                ));
            }
        }
        Ok(())
    }
}

/// Reads a filesystem table whole when the job starts; bad records are skipped (and logged) or
/// fail the job, as the table's format says.
fn load_file_table(table: &Table) -> LoadTable {
    let ConnectorConfig::Filesystem(config) = table.connector.clone() else {
        unreachable!("lookup tables are filesystem tables")
    };
    let name = table.name.clone();
    std::sync::Arc::new(move || {
        let (batches, skipped) = read_all(&config, &name)?;
        if skipped > 0 {
            tracing::warn!("lookup table `{name}`: {skipped} bad records skipped");
        }
        Ok(batches)
    })
}
