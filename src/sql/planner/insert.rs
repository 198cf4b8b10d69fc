//! INSERT INTO and bare queries: each planned by DataFusion and compiled into a pipeline of the
//! job; an INSERT of a query already planned joins that pipeline (Flink's sub-plan reuse).

use std::sync::Arc;

use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use super::job_builder::{JobBuilder, PendingPipeline};
use super::{Planner, df_error};
use crate::connectors::ConnectorConfig;
use crate::plan::SinkNode;
use crate::sql::ast::ColumnKind;
use crate::sql::error::{Position, SourceText, SqlError};
use crate::sql::rewrite::rewrite_statement;
use crate::stream::new_watermark_cell;

impl Planner {
    pub(super) async fn plan_statement(
        &self,
        src: &SourceText,
        stmt: SqlStatement,
        pos: Position,
    ) -> Result<LogicalPlan, SqlError> {
        let state = self.state();
        let plan = state
            .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
            .await
            .map_err(|e| df_error(src, e, pos))?;
        state.optimize(&plan).map_err(|e| df_error(src, e, pos))
    }

    pub(super) async fn plan_insert(
        &self,
        src: &SourceText,
        insert: &SqlStatement,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<(), SqlError> {
        let mut stmt = insert.clone();
        rewrite_statement(&mut stmt);
        let plan = self.plan_statement(src, stmt, pos).await?;
        let LogicalPlan::Dml(dml) = &plan else {
            return Err(src.error(pos, "expected INSERT INTO"));
        };
        if !matches!(dml.op, WriteOp::Insert(_)) {
            return Err(src.error(
                pos,
                format!("{} is not supported on streams; only INSERT INTO", dml.op),
            ));
        }
        let sink_name = dml.table_name.table().to_string();
        let Some(table) = self.tables.get(&sink_name) else {
            return Err(src.error(
                pos,
                format!("`{sink_name}` is a view; INSERT INTO needs a table with a connector"),
            ));
        };
        if table
            .def
            .columns
            .iter()
            .any(|c| !matches!(c.kind, ColumnKind::Physical { .. }))
        {
            return Err(src.error(pos, format!("INSERT INTO `{sink_name}`: a sink table may only have physical columns (no computed or metadata columns)")));
        }
        if !table.connector.can_write() {
            return Err(src.error(
                pos,
                format!(
                    "INSERT INTO `{sink_name}`: connector '{}' can only be read from",
                    table.connector.name()
                ),
            ));
        }
        let sink = SinkNode {
            table: sink_name.clone(),
            schema: table.physical_schema.clone(),
            connector: table.connector.clone(),
        };
        // Flink's sub-plan reuse: the same query into another table is computed once.
        let query = self
            .settings
            .reuse_sub_plan
            .then(|| dml.input.display_indent().to_string());
        if let Some(shared) = job
            .pipelines
            .iter_mut()
            .find(|p| query.is_some() && p.query == query)
        {
            shared.name = format!("{}, {sink_name}", shared.name);
            shared.sinks.push(sink);
            return Ok(());
        }
        job.watermark = new_watermark_cell();
        let stream = self.compile(src, &dml.input, pos, job)?;
        stream.check_complete(src, pos)?;
        job.used_columns[stream.source].extend(stream.reads.iter().copied());
        job.pipelines.push(PendingPipeline {
            watermark: job.watermark.clone(),
            side_output: stream.side_output,
            name: format!("INSERT INTO {sink_name}"),
            source: stream.source,
            operators: stream.operators,
            sinks: vec![sink],
            query,
        });
        Ok(())
    }

    pub(super) async fn plan_query_to_print(
        &self,
        src: &SourceText,
        query: &SqlStatement,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<(), SqlError> {
        let mut stmt = query.clone();
        rewrite_statement(&mut stmt);
        let plan = self.plan_statement(src, stmt, pos).await?;
        job.watermark = new_watermark_cell();
        let stream = self.compile(src, &plan, pos, job)?;
        stream.check_complete(src, pos)?;
        job.used_columns[stream.source].extend(stream.reads.iter().copied());
        let schema = Arc::new(stream.schema.as_arrow().clone());
        let n = job.pipelines.len();
        job.pipelines.push(PendingPipeline {
            watermark: job.watermark.clone(),
            side_output: stream.side_output,
            name: format!("SELECT (line {})", pos.line),
            source: stream.source,
            operators: stream.operators,
            sinks: vec![SinkNode {
                table: format!("query_{n}"),
                schema,
                connector: ConnectorConfig::stdout(),
            }],
            query: None,
        });
        Ok(())
    }
}
