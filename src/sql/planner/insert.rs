//! INSERT INTO and bare queries: each planned by DataFusion and compiled into a pipeline of the
//! job; an INSERT of a query already planned joins that pipeline (Flink's sub-plan reuse).

use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use super::compile::CompiledStream;
use super::job_builder::{JobBuilder, PendingPipeline};
use super::{Planner, df_error};
use crate::connectors::ConnectorConfig;
use crate::plan::SinkNode;
use crate::sql::ast::ColumnKind;
use crate::sql::catalog::Table;
use crate::sql::error::{Position, SourceText, SqlError};
use crate::sql::rewrite::rewrite_statement;
use crate::stream::changelog::with_kinds;
use crate::stream::{WatermarkCell, new_watermark_cell};

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
        let optimized = state.optimize(&plan).map_err(|e| df_error(src, e, pos))?;
        // RUST_LOG=sluice=debug shows what the streaming plan is compiled from.
        tracing::debug!("optimized logical plan:\n{}", optimized.display_indent());
        Ok(optimized)
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
            let sink = sink_node(src, pos, table, &shared.updating)?;
            shared.name = format!("{}, {sink_name}", shared.name);
            shared.sinks.push(sink);
            return Ok(());
        }
        let stream = self.compile_pipeline(src, &dml.input, pos, job)?;
        let sink = sink_node(src, pos, table, &stream.updating)?;
        let name = format!("INSERT INTO {sink_name}");
        let pipeline = pending_pipeline(name, stream, sink, job.watermark.clone(), query);
        job.pipelines.push(pipeline);
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
        let stream = self.compile_pipeline(src, &plan, pos, job)?;
        let print = SinkNode {
            table: format!("query_{}", job.pipelines.len()),
            schema: stream.arrow_schema(),
            connector: ConnectorConfig::stdout(),
        };
        let name = format!("SELECT (line {})", pos.line);
        let pipeline = pending_pipeline(name, stream, print, job.watermark.clone(), None);
        job.pipelines.push(pipeline);
        Ok(())
    }

    /// Compiles `plan` as a new pipeline of `job`, with a watermark cell of its own.
    fn compile_pipeline(
        &self,
        src: &SourceText,
        plan: &LogicalPlan,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        job.watermark = new_watermark_cell();
        let stream = self.compile(src, plan, pos, job)?;
        stream.check_complete(src, pos)?;
        for (source, columns) in &stream.reads {
            job.used_columns[*source].extend(columns.iter().copied());
        }
        Ok(stream)
    }
}

/// The sink writing `table`: its declared columns, and the row kinds when `updating` — which
/// only a connector taking changes accepts (Flink's message otherwise).
fn sink_node(
    src: &SourceText,
    pos: Position,
    table: &Table,
    updating: &Option<String>,
) -> Result<SinkNode, SqlError> {
    let mut schema = table.physical_schema.clone();
    if let Some(producer) = updating {
        if !table.connector.takes_changes() {
            return Err(src.error(
                pos,
                format!(
                    "table sink `{}` (connector '{}') doesn't support consuming update and delete changes, which are produced by {producer}; write it to a sink that takes changes (print, blackhole, a ClickHouse table with a PRIMARY KEY), or make the query append-only (a window aggregation)",
                    table.name,
                    table.connector.name()
                ),
            ));
        }
        schema = with_kinds(&schema);
    }
    Ok(SinkNode {
        table: table.name.clone(),
        schema,
        connector: table.connector.clone(),
    })
}

/// The job's entry for a compiled pipeline writing to `sink`.
fn pending_pipeline(
    name: String,
    stream: CompiledStream,
    sink: SinkNode,
    watermark: WatermarkCell,
    query: Option<String>,
) -> PendingPipeline {
    PendingPipeline {
        name,
        operators: stream.operators,
        sinks: vec![sink],
        watermark,
        side_output: stream.side_output,
        updating: stream.updating,
        query,
    }
}
