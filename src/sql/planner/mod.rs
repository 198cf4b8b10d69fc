//! From statements to a runnable [`JobGraph`].
//!
//! DDL fills the catalog; each `INSERT` (and a bare `SELECT`, which prints) is planned by
//! DataFusion's SQL planner (`SqlToRel` through a `SessionState`), analyzed (type coercion, view
//! inlining) and optimized, and the optimized logical plan is then translated into our streaming
//! operators: a table scan becomes a shared source, filters and projections become compiled
//! physical expressions. Everything is built once, here; nothing is planned per batch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::empty::EmptyTable;
use datafusion::catalog::view::ViewTable;
use datafusion::common::{DFSchema, DFSchemaRef, TableReference};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, WriteOp};
use datafusion::optimizer::Optimizer;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, ExprWithAlias, Statement as SqlStatement};

mod join;
mod match_recognize;
mod settings;
mod window;

pub use settings::{LateRows, Settings};

use window::uses_window_columns;

use super::ast::{ColumnKind, CreateTable, Located, ObjectKind, Script, ShowKind, Statement};
use super::catalog::{Table, WatermarkSpec};
use super::error::{Position, SourceText, SqlError};
use super::functions::{self, CurrentWatermark};
use super::rewrite::{rewrite_expr, rewrite_statement};
use super::types::flink_type_name;
use super::window::WindowTvf;
use crate::connectors::{ConnectorConfig, MetadataColumn, ScanColumns, TableDecl};
use crate::operators::match_recognize::MatchRecognizeDef;
use crate::operators::{Filter, Projection};
use crate::options::{OptionError, OptionPlace};
use crate::plan::{JobGraph, PipelineNode, SinkNode, SourceNode, WatermarkNode};
use crate::stream::{Operator, WatermarkCell, new_watermark_cell};

/// Plans scripts against a catalog that lives as long as the planner (a shell session keeps one).
pub struct Planner {
    ctx: SessionContext,
    tables: BTreeMap<String, Arc<Table>>,
    views: BTreeMap<String, String>,
    settings: Settings,
    /// Window TVF relations registered so far, with the plan of their input.
    windows: BTreeMap<String, (WindowTvf, LogicalPlan)>,
    /// MATCH_RECOGNIZE relations registered so far: the plan, its input, where it is written.
    matches: BTreeMap<String, (Arc<MatchRecognizeDef>, LogicalPlan, Position)>,
}

/// What a script asks to run: the job graph (if it has INSERTs or queries) and its settings.
pub struct PlannedScript {
    /// What its SHOW, DESCRIBE and EXPLAIN statements print, in order.
    pub output: Vec<String>,
    pub job: Option<JobGraph>,
    pub settings: Settings,
}

impl PlannedScript {
    /// The job's dataflow as `sluice explain` shows it, in the user's names.
    pub fn explain(&self) -> Option<String> {
        self.job.as_ref().map(|job| user_facing(&job.explain()))
    }
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

impl Planner {
    pub fn new() -> Self {
        let mut config = SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false);
        let opts = config.options_mut();
        // Flink identifiers are case-sensitive: `speedKmh` must stay `speedKmh`.
        opts.sql_parser.enable_ident_normalization = false;
        opts.sql_parser.map_string_types_to_utf8view = false;
        opts.sql_parser.collect_spans = true;
        // A lone COUNT(DISTINCT x) must stay one aggregation over the window, not become the
        // batch engine's two-level GROUP BY (which a stream cannot run as one window).
        let rules = Optimizer::new()
            .rules
            .into_iter()
            .filter(|r| r.name() != "single_distinct_aggregation_to_group_by")
            .collect();
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_optimizer_rules(rules)
            .build();
        Planner {
            ctx: {
                let ctx = SessionContext::new_with_state(state);
                functions::register(&ctx);
                ctx
            },
            tables: BTreeMap::new(),
            views: BTreeMap::new(),
            settings: Settings::default(),
            windows: BTreeMap::new(),
            matches: BTreeMap::new(),
        }
    }

    fn state(&self) -> SessionState {
        self.ctx.state()
    }

    pub fn tables(&self) -> &BTreeMap<String, Arc<Table>> {
        &self.tables
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Plans a whole script: DDL is applied in order, and every INSERT and query becomes part of
    /// one job, sharing the scans of tables they have in common.
    pub async fn plan_script(&mut self, script: &Script) -> Result<PlannedScript, SqlError> {
        let src = &script.source;
        let mut job = JobBuilder::default();
        let mut output = Vec::new();
        for (i, stmt) in script.statements.iter().enumerate() {
            self.register_matches(src, &script.matches, i).await?;
            self.register_windows(src, &script.windows).await?;
            match &stmt.node {
                Statement::Explain(inner) => {
                    if !matches!(
                        inner.node,
                        Statement::Insert(_) | Statement::StatementSet(_) | Statement::Query(_)
                    ) {
                        return Err(src.error(
                            inner.pos,
                            "EXPLAIN takes an INSERT INTO, a statement set or a query",
                        ));
                    }
                    let mut alone = JobBuilder::default();
                    self.plan_runnable(src, inner, &mut alone).await?;
                    if let Some(job) = alone.build(job_name(&src.name), self.settings.idle_timeout)
                    {
                        output.push(user_facing(&job.explain()));
                    }
                }
                Statement::Show(ShowKind::Jobs) | Statement::StopJob { .. } => {
                    return Err(src.error(
                        stmt.pos,
                        "SHOW JOBS and STOP JOB talk to a job server, which Sluice does not have yet; `sluice run` runs one job in the foreground (Ctrl-C stops it)",
                    ));
                }
                Statement::Show(kind) => output.push(self.show(*kind)),
                Statement::Describe(name) => match self.describe(name) {
                    Some(text) => output.push(text),
                    None => {
                        return Err(src.error(stmt.pos, format!("there is no table `{name}`")));
                    }
                },
                _ => self.plan_runnable(src, stmt, &mut job).await?,
            }
        }
        let name = self
            .settings
            .pipeline_name
            .clone()
            .unwrap_or_else(|| job_name(&src.name));
        Ok(PlannedScript {
            output,
            job: job.build(name, self.settings.idle_timeout),
            settings: self.settings.clone(),
        })
    }

    /// Adds an INSERT, statement set or query to `job`; applies any other statement to the
    /// catalog.
    async fn plan_runnable(
        &mut self,
        src: &SourceText,
        stmt: &Located<Statement>,
        job: &mut JobBuilder,
    ) -> Result<(), SqlError> {
        match &stmt.node {
            Statement::Insert(insert) => self.plan_insert(src, insert, stmt.pos, job).await,
            Statement::StatementSet(inserts) => {
                for insert in inserts {
                    self.plan_insert(src, &insert.node, insert.pos, job).await?;
                }
                Ok(())
            }
            Statement::Query(query) => self.plan_query_to_print(src, query, stmt.pos, job).await,
            _ => self.apply_ddl(src, stmt).await,
        }
    }

    /// Applies one catalog statement (CREATE, DROP, SET, RESET).
    pub async fn apply_ddl(
        &mut self,
        src: &SourceText,
        stmt: &Located<Statement>,
    ) -> Result<(), SqlError> {
        match &stmt.node {
            Statement::Set { key, value } => self
                .settings
                .set(key, value)
                .map_err(|message| src.error(stmt.pos, message))?,
            Statement::Reset { key: Some(key) } => self.settings.reset(key),
            Statement::Reset { key: None } => self.settings.reset_all(),
            Statement::CreateTable(def) => self.create_table(src, def).await?,
            Statement::CreateView {
                name,
                query,
                if_not_exists,
            } => {
                if self.exists(name) {
                    if *if_not_exists {
                        return Ok(());
                    }
                    return Err(src.error(stmt.pos, format!("`{name}` already exists")));
                }
                let mut stmt_ast = SqlStatement::Query(query.clone());
                rewrite_statement(&mut stmt_ast);
                let plan = self.plan_statement(src, stmt_ast.clone(), stmt.pos).await?;
                let view = ViewTable::new(plan, Some(query.to_string()));
                self.ctx
                    .register_table(TableReference::bare(name.as_str()), Arc::new(view))
                    .map_err(|e| df_error(src, e, stmt.pos))?;
                self.views.insert(name.clone(), query.to_string());
            }
            Statement::Drop {
                kind,
                name,
                if_exists,
            } => {
                let present = match kind {
                    ObjectKind::Table => self.tables.remove(name).is_some(),
                    ObjectKind::View => self.views.remove(name).is_some(),
                };
                if !present && !if_exists {
                    return Err(src.error(
                        stmt.pos,
                        format!(
                            "there is no {} `{name}`",
                            if *kind == ObjectKind::Table {
                                "table"
                            } else {
                                "view"
                            }
                        ),
                    ));
                }
                let _ = self
                    .ctx
                    .deregister_table(TableReference::bare(name.as_str()));
            }
            _ => {}
        }
        Ok(())
    }

    fn exists(&self, name: &str) -> bool {
        self.tables.contains_key(name) || self.views.contains_key(name)
    }

    /// `SHOW TABLES` / `VIEWS` / `FUNCTIONS` / settings as text.
    pub fn show(&self, kind: ShowKind) -> String {
        match kind {
            ShowKind::Tables => self.tables.keys().cloned().collect::<Vec<_>>().join("\n"),
            ShowKind::Views => self.views.keys().cloned().collect::<Vec<_>>().join("\n"),
            ShowKind::Functions => {
                let state = self.state();
                let mut names: Vec<String> = state
                    .scalar_functions()
                    .keys()
                    .chain(state.aggregate_functions().keys())
                    .cloned()
                    .collect();
                names.sort();
                names.dedup();
                names.join("\n")
            }
            ShowKind::Settings => self
                .settings
                .values()
                .iter()
                .map(|(k, v)| format!("'{k}' = '{v}'"))
                .collect::<Vec<_>>()
                .join("\n"),
            ShowKind::Jobs => String::new(),
        }
    }

    /// `DESCRIBE name`: columns with Flink types, watermark and connector.
    pub fn describe(&self, name: &str) -> Option<String> {
        let t = self.tables.get(name)?;
        let mut out = String::new();
        for (field, col) in t.row_schema.fields().iter().zip(&t.def.columns) {
            let kind = match &col.kind {
                ColumnKind::Physical { .. } => String::new(),
                ColumnKind::Computed(e) => format!("  AS {e}"),
                ColumnKind::Metadata { key, .. } => {
                    format!("  METADATA FROM '{}'", key.as_deref().unwrap_or(&col.name))
                }
            };
            let null = if field.is_nullable() { "" } else { " NOT NULL" };
            out.push_str(&format!(
                "{} {}{null}{kind}\n",
                field.name(),
                flink_type_name(field.data_type())
            ));
        }
        if let Some(w) = &t.watermark {
            out.push_str(&format!("WATERMARK FOR {} AS {}\n", w.column, w.text));
        }
        out.push_str(&format!("connector: {}", t.connector.describe()));
        Some(out)
    }

    async fn create_table(&mut self, src: &SourceText, def: &CreateTable) -> Result<(), SqlError> {
        if self.exists(&def.name) {
            if def.if_not_exists {
                return Ok(());
            }
            return Err(src.error(def.name_pos, format!("table `{}` already exists", def.name)));
        }
        let mut physical = Vec::new();
        let mut metadata = Vec::new();
        for col in &def.columns {
            match &col.kind {
                ColumnKind::Physical {
                    data_type,
                    nullable,
                } => {
                    physical.push(Field::new(&col.name, data_type.clone(), *nullable));
                }
                ColumnKind::Metadata {
                    data_type,
                    key,
                    is_virtual,
                } => metadata.push(MetadataColumn {
                    name: col.name.clone(),
                    key: key.clone().unwrap_or_else(|| col.name.clone()),
                    data_type: data_type.clone(),
                    is_virtual: *is_virtual,
                }),
                ColumnKind::Computed(_) => {}
            }
        }
        let physical_schema = Arc::new(Schema::new(physical.clone()));
        let mut scan_fields = physical;
        scan_fields.extend(
            metadata
                .iter()
                .map(|m| Field::new(&m.name, m.data_type.clone(), true)),
        );
        let scan_schema = Arc::new(Schema::new(scan_fields));
        let scan_df = DFSchema::try_from(scan_schema.as_ref().clone())
            .map_err(|e| df_error(src, e, def.name_pos))?;

        // Row columns in declared order: scan columns by reference, computed ones as expressions.
        let mut row_fields = Vec::new();
        let mut row_exprs: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        for col in &def.columns {
            if let ColumnKind::Computed(expr) = &col.kind {
                let (logical, phys) = self.compile_sql_expr(src, expr, &scan_df, col.pos)?;
                let (_, field) = logical
                    .to_field(&scan_df)
                    .map_err(|e| df_error(src, e, col.pos))?;
                row_fields.push(Field::new(
                    &col.name,
                    field.data_type().clone(),
                    field.is_nullable(),
                ));
                row_exprs.push(phys);
            } else {
                let idx = scan_schema
                    .index_of(&col.name)
                    .expect("every non-computed column is in the scan schema");
                row_fields.push(scan_schema.field(idx).clone());
                row_exprs.push(Arc::new(Column::new(&col.name, idx)));
            }
        }
        let row_schema: SchemaRef = Arc::new(Schema::new(row_fields));

        let watermark = match &def.watermark {
            None => None,
            Some(w) => {
                let Ok(idx) = row_schema.index_of(&w.column) else {
                    return Err(src.error(
                        w.pos,
                        format!(
                            "WATERMARK FOR `{}`: table `{}` has no such column",
                            w.column, def.name
                        ),
                    ));
                };
                if !matches!(row_schema.field(idx).data_type(), DataType::Timestamp(..)) {
                    return Err(src.error(
                        w.pos,
                        format!(
                            "WATERMARK FOR `{}`: the rowtime column must be TIMESTAMP(3) or TIMESTAMP_LTZ(3), not {}",
                            w.column,
                            flink_type_name(row_schema.field(idx).data_type())
                        ),
                    ));
                }
                let row_df = DFSchema::try_from(row_schema.as_ref().clone())
                    .map_err(|e| df_error(src, e, w.pos))?;
                let (logical, expr) = self.compile_sql_expr(src, &w.expr, &row_df, w.pos)?;
                let ty = logical
                    .get_type(&row_df)
                    .map_err(|e| df_error(src, e, w.pos))?;
                if !matches!(ty, DataType::Timestamp(..)) {
                    return Err(src.error(
                        w.pos,
                        format!(
                            "the WATERMARK expression must give a TIMESTAMP, it gives {}",
                            flink_type_name(&ty)
                        ),
                    ));
                }
                Some(WatermarkSpec {
                    column: w.column.clone(),
                    column_index: idx,
                    expr,
                    text: w.expr.to_string(),
                })
            }
        };

        let options: Vec<(String, String)> = def
            .options
            .iter()
            .map(|o| (o.key.clone(), o.value.clone()))
            .collect();
        let connector = ConnectorConfig::from_table(&TableDecl {
            name: &def.name,
            options: &options,
            physical: &physical_schema,
            metadata: &metadata,
            primary_key: &def.primary_key,
        })
        .map_err(|e| option_error(src, def, e))?;
        let table = Table {
            name: def.name.clone(),
            def: def.clone(),
            physical_schema,
            metadata,
            scan_schema,
            row_schema: row_schema.clone(),
            row_exprs,
            watermark,
            connector,
        };
        self.ctx
            .register_table(
                TableReference::bare(def.name.as_str()),
                Arc::new(EmptyTable::new(row_schema)),
            )
            .map_err(|e| df_error(src, e, def.name_pos))?;
        self.tables.insert(def.name.clone(), Arc::new(table));
        Ok(())
    }

    /// A SQL expression over `schema`, rewritten and planned (not yet compiled).
    fn logical_sql_expr(
        &self,
        src: &SourceText,
        expr: &SqlExpr,
        schema: &DFSchema,
        pos: Position,
    ) -> Result<Expr, SqlError> {
        let mut expr = expr.clone();
        rewrite_expr(&mut expr);
        self.state()
            .create_logical_expr_from_sql_expr(ExprWithAlias { expr, alias: None }, schema)
            .map_err(|e| df_error(src, e, pos))
    }

    /// A SQL expression over `schema`: rewritten, planned, type-coerced and compiled.
    fn compile_sql_expr(
        &self,
        src: &SourceText,
        expr: &SqlExpr,
        schema: &DFSchema,
        pos: Position,
    ) -> Result<(Expr, Arc<dyn PhysicalExpr>), SqlError> {
        let logical = self.logical_sql_expr(src, expr, schema, pos)?;
        let physical = physical_expr(&self.state(), logical.clone(), schema)
            .map_err(|e| df_error(src, e, pos))?;
        Ok((logical, physical))
    }

    async fn plan_statement(
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

    async fn plan_insert(
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
        job.side_output = None;
        let stream = self.compile(src, &dml.input, pos, job)?;
        stream.check_complete(src, pos)?;
        job.used_columns[stream.source].extend(stream.reads.iter().copied());
        job.pipelines.push(PendingPipeline {
            watermark: job.watermark.clone(),
            side_output: job.side_output.take(),
            name: format!("INSERT INTO {sink_name}"),
            source: stream.source,
            operators: stream.operators,
            sinks: vec![sink],
            query,
        });
        Ok(())
    }

    async fn plan_query_to_print(
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
        job.side_output = None;
        let stream = self.compile(src, &plan, pos, job)?;
        stream.check_complete(src, pos)?;
        job.used_columns[stream.source].extend(stream.reads.iter().copied());
        let schema = Arc::new(stream.schema.as_arrow().clone());
        let n = job.pipelines.len();
        job.pipelines.push(PendingPipeline {
            watermark: job.watermark.clone(),
            side_output: job.side_output.take(),
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

    fn expr_compiler<'a>(
        &self,
        src: &'a SourceText,
        pos: Position,
        job: &JobBuilder,
    ) -> ExprCompiler<'a> {
        ExprCompiler {
            state: self.state(),
            cell: job.watermark.clone(),
            src,
            pos,
        }
    }

    /// Translates an optimized logical plan into a source and a chain of operators.
    fn compile(
        &self,
        src: &SourceText,
        plan: &LogicalPlan,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        let exprs = self.expr_compiler(src, pos, job);
        match plan {
            LogicalPlan::TableScan(scan) if self.windows.contains_key(scan.table_name.table()) => {
                self.compile_window_scan(src, scan, pos, job)
            }
            LogicalPlan::TableScan(scan) if self.matches.contains_key(scan.table_name.table()) => {
                self.compile_match_scan(src, scan, pos, job)
            }
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table();
                let Some(table) = self.tables.get(name) else {
                    return Err(src.error(pos, format!("`{name}` is not a table")));
                };
                if let Some(problem) = table.connector.source_problem() {
                    return Err(src.error(pos, format!("table `{name}`: {problem}")));
                }
                if scan.fetch.is_some() {
                    return Err(src.error(pos, "LIMIT is not supported on an unbounded stream"));
                }
                let source = job.source_for(table);
                let reads = scan.projection.clone().unwrap_or_else(|| (0..table.row_schema.fields().len()).collect()).into_iter().collect();
                let mut operators: Vec<Box<dyn Operator>> = Vec::new();
                if let Some(select) = scan.projection.as_ref().and_then(|i| column_selection(i, &table.row_schema, &scan.projected_schema)) {
                    operators.push(select);
                }
                for f in &scan.filters {
                    let pred = exprs.compile(f, &scan.projected_schema)?;
                    operators.push(Box::new(Filter::new(pred, Arc::new(scan.projected_schema.as_arrow().clone()))));
                }
Ok(CompiledStream { source, operators, schema: scan.projected_schema.clone(), window: None, reads })
            }
            LogicalPlan::Filter(f) => {
                let mut s = self.compile(src, &f.input, pos, job)?;
                if s.window.is_some() && uses_window_columns(&f.predicate) {
                    return Err(src.error(pos, "a WHERE on window_start/window_end before the GROUP BY is not supported; filter in HAVING or after the aggregation"));
                }
                let pred = exprs.compile(&f.predicate, f.input.schema())?;
                s.operators.push(Box::new(Filter::new(pred, Arc::new(f.input.schema().as_arrow().clone()))));
                Ok(s)
            }
            LogicalPlan::Projection(p) => {
                let mut s = self.compile(src, &p.input, pos, job)?;
                if s.window.is_some() && p.expr.iter().any(|e| !matches!(e, Expr::Column(_)) && uses_window_columns(e)) {
                    return Err(src.error(pos, "window columns can only be grouped by in a window aggregation, not computed on before it"));
                }
                // `SELECT *` of a view or window input: the batch already is the projection.
                let input = p.input.schema();
                let identity = p.expr.len() == input.fields().len()
                    && p.expr.iter().enumerate().all(|(i, e)| matches!(e, Expr::Column(c) if input.index_of_column(c).ok() == Some(i)))
                    && p.schema.fields().iter().zip(input.fields()).all(|(a, b)| a.name() == b.name());
                if !identity {
                    let columns = p.expr.iter().map(|e| exprs.compile(e, input)).collect::<Result<Vec<_>, _>>()?;
                    s.operators.push(Box::new(Projection::new(columns, Arc::new(p.schema.as_arrow().clone()))));
                }
                s.schema = p.schema.clone();
                Ok(s)
            }
            LogicalPlan::Aggregate(agg) => self.compile_window_aggregate(src, agg, pos, job),
            LogicalPlan::Join(j) => self.compile_join(src, j, pos, job),
            LogicalPlan::SubqueryAlias(a) => {
                let mut s = self.compile(src, &a.input, pos, job)?;
                s.schema = a.schema.clone();
                Ok(s)
            }
            other => Err(src.error(
                pos,
                format!(
                    "{} is not supported in a streaming query yet (supported: projections, filters, CASE, CAST, scalar functions, views, window aggregations, MATCH_RECOGNIZE, joins with a bounded table)",
                    node_name(other)
                ),
            )),
        }
    }
}

/// The operator keeping columns `indices` of `input` (a scan's projection), or `None` when that
/// is every column in order.
fn column_selection(
    indices: &[usize],
    input: &Schema,
    output: &DFSchemaRef,
) -> Option<Box<dyn Operator>> {
    if indices.iter().copied().eq(0..input.fields().len()) {
        return None;
    }
    let exprs = indices
        .iter()
        .map(|&i| Arc::new(Column::new(input.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
        .collect();
    Some(Box::new(Projection::new(
        exprs,
        Arc::new(output.as_arrow().clone()),
    )))
}

struct CompiledStream {
    source: usize,
    operators: Vec<Box<dyn Operator>>,
    schema: DFSchemaRef,
    /// Set while the stream is a window relation not yet aggregated.
    window: Option<WindowTvf>,
    /// Row columns of the source that this stream reads.
    reads: std::collections::BTreeSet<usize>,
}

impl CompiledStream {
    /// A window relation must end in its aggregation: its window columns are placeholders.
    fn check_complete(&self, src: &SourceText, pos: Position) -> Result<(), SqlError> {
        match &self.window {
            Some(w) => Err(src.error(
                w.pos,
                "a window TVF must be aggregated: GROUP BY window_start, window_end (window assignment without aggregation is not supported yet)",
            )),
            None => Ok(()),
        }
        .map_err(|e| if e.pos.line == 0 { src.error(pos, e.message) } else { e })
    }
}

/// Compiles a pipeline's logical expressions into physical ones, once, at plan time:
/// CURRENT_WATERMARK is bound to the pipeline's watermark cell, errors are positioned.
struct ExprCompiler<'a> {
    state: SessionState,
    cell: WatermarkCell,
    src: &'a SourceText,
    pos: Position,
}

impl ExprCompiler<'_> {
    fn compile(&self, e: &Expr, schema: &DFSchemaRef) -> Result<Arc<dyn PhysicalExpr>, SqlError> {
        physical_expr(
            &self.state,
            bind_current_watermark(e.clone(), &self.cell),
            schema,
        )
        .map_err(|e| df_error(self.src, e, self.pos))
    }
}

/// `e` compiled for evaluation, simplified first as the optimizer does for expressions in a plan:
/// some functions (COALESCE, NVL, ...) only have a simplified physical form, and expressions
/// planned outside a query (MATCH_RECOGNIZE's MEASURES and DEFINE) never meet the optimizer.
fn physical_expr(
    state: &SessionState,
    e: Expr,
    schema: &DFSchema,
) -> Result<Arc<dyn PhysicalExpr>, DataFusionError> {
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .build();
    let simplified = ExprSimplifier::new(context).simplify(e)?;
    state.create_physical_expr(simplified, schema)
}

/// Points every CURRENT_WATERMARK call of `e` at the pipeline's watermark cell.
fn bind_current_watermark(e: Expr, cell: &WatermarkCell) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::expr::ScalarFunction;
    e.transform_up(|e| match e {
        Expr::ScalarFunction(f) if f.func.name() == CurrentWatermark::NAME => {
            Ok(Transformed::yes(Expr::ScalarFunction(
                ScalarFunction::new_udf(Arc::new(CurrentWatermark::udf(cell.clone())), f.args),
            )))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .expect("the rewrite never fails")
}

struct PendingPipeline {
    name: String,
    source: usize,
    operators: Vec<Box<dyn Operator>>,
    sinks: Vec<SinkNode>,
    watermark: WatermarkCell,
    side_output: Option<SinkNode>,
    /// The optimized query, as text: an INSERT of the same query joins this pipeline.
    query: Option<String>,
}

/// Collects the sources and pipelines of one job; a table scanned by several INSERTs is read once.
#[derive(Default)]
struct JobBuilder {
    sources: Vec<Arc<Table>>,
    /// Row columns of each source that some pipeline reads.
    used_columns: Vec<std::collections::BTreeSet<usize>>,
    pipelines: Vec<PendingPipeline>,
    /// The watermark cell of the pipeline being compiled, for CURRENT_WATERMARK.
    watermark: WatermarkCell,
    /// Where the pipeline being compiled sends late rows, if anywhere.
    side_output: Option<SinkNode>,
}

impl JobBuilder {
    fn source_for(&mut self, table: &Arc<Table>) -> usize {
        if let Some(i) = self.sources.iter().position(|t| t.name == table.name) {
            return i;
        }
        self.sources.push(table.clone());
        self.used_columns.push(Default::default());
        self.sources.len() - 1
    }

    /// The payload columns a source must decode: those behind the row columns read by some
    /// pipeline, its watermark and its computed columns, plus every NOT NULL one. `None` = all.
    fn decode_columns(
        table: &Table,
        used: &std::collections::BTreeSet<usize>,
    ) -> Option<Vec<usize>> {
        use datafusion::physical_expr::utils::collect_columns;
        let mut rows: std::collections::BTreeSet<usize> = used.clone();
        if let Some(w) = &table.watermark {
            rows.extend(collect_columns(&w.expr).iter().map(|c| c.index()));
        }
        let physical = table.physical_schema.fields().len();
        let mut decode: std::collections::BTreeSet<usize> = rows
            .iter()
            .flat_map(|&r| {
                collect_columns(&table.row_exprs[r])
                    .into_iter()
                    .map(|c| c.index())
            })
            .filter(|&i| i < physical)
            .collect();
        decode.extend(
            table
                .physical_schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.is_nullable())
                .map(|(i, _)| i),
        );
        (decode.len() < physical).then(|| decode.into_iter().collect())
    }

    /// Payload columns behind the event-time column: a record without them is bad.
    fn required_columns(table: &Table) -> Vec<usize> {
        use datafusion::physical_expr::utils::collect_columns;
        let Some(w) = &table.watermark else {
            return Vec::new();
        };
        let physical = table.physical_schema.fields().len();
        let mut required: Vec<usize> = collect_columns(&table.row_exprs[w.column_index])
            .iter()
            .map(|c| c.index())
            .filter(|&i| i < physical)
            .collect();
        required.sort_unstable();
        required.dedup();
        required
    }

    fn source_node(table: &Table, used: &BTreeSet<usize>, idle: Option<Duration>) -> SourceNode {
        SourceNode {
            table: table.name.clone(),
            connector: table.connector.clone(),
            scan_schema: table.scan_schema.clone(),
            row_schema: table.row_schema.clone(),
            row_exprs: (!table.row_is_scan()).then(|| table.row_exprs.clone()),
            watermark: table.watermark.as_ref().map(|w| WatermarkNode {
                column: w.column.clone(),
                column_index: w.column_index,
                expr: w.expr.clone(),
                text: w.text.clone(),
            }),
            idle_timeout: table.connector.idle_timeout().or(idle),
            columns: ScanColumns {
                decode: Self::decode_columns(table, used),
                required: Self::required_columns(table),
            },
        }
    }

    /// The job, if the script has anything to run; `idle_timeout` is the default of every
    /// source without its own.
    fn build(self, name: String, idle_timeout: Option<Duration>) -> Option<JobGraph> {
        if self.pipelines.is_empty() {
            return None;
        }
        Some(JobGraph {
            name,
            sources: self
                .sources
                .into_iter()
                .zip(&self.used_columns)
                .map(|(table, used)| Self::source_node(&table, used, idle_timeout))
                .collect(),
            pipelines: self
                .pipelines
                .into_iter()
                .map(|p| PipelineNode {
                    name: p.name,
                    source: p.source,
                    operators: p.operators,
                    sinks: p.sinks,
                    watermark: p.watermark,
                    side_output: p.side_output,
                })
                .collect(),
        })
    }
}

fn job_name(file: &str) -> String {
    std::path::Path::new(file)
        .file_stem()
        .map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned())
}

fn node_name(plan: &LogicalPlan) -> String {
    match plan {
        LogicalPlan::Aggregate(_) => "GROUP BY aggregation without a window".into(),
        LogicalPlan::Join(_) => "JOIN".into(),
        LogicalPlan::Sort(_) => "ORDER BY".into(),
        LogicalPlan::Limit(_) => "LIMIT".into(),
        LogicalPlan::Window(_) => "OVER aggregation".into(),
        LogicalPlan::Union(_) => "UNION".into(),
        LogicalPlan::Distinct(_) => "DISTINCT".into(),
        LogicalPlan::EmptyRelation(_) => "a query that reads no table".into(),
        LogicalPlan::Values(_) => "VALUES".into(),
        other => other.display().to_string(),
    }
}

/// Plan text without the relations the parser invents for window TVFs and MATCH_RECOGNIZE
/// (`max(__window_0.driver_id)` → `max(driver_id)`): EXPLAIN speaks the user's names.
fn user_facing(text: &str) -> String {
    static INTERNAL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"__(window|match)_\d+\.").expect("a valid pattern")
    });
    INTERNAL.replace_all(text, "").into_owned()
}

/// A connector's complaint about a table's options, at the option (or column) it is about.
fn option_error(src: &SourceText, def: &CreateTable, e: OptionError) -> SqlError {
    let pos = match &e.place {
        OptionPlace::Option(key) => def.options.iter().find(|o| &o.key == key).map(|o| o.pos),
        OptionPlace::Column(name) => def.columns.iter().find(|c| &c.name == name).map(|c| c.pos),
        OptionPlace::Table => None,
    };
    src.error(pos.unwrap_or(def.name_pos), e.message)
}

/// A DataFusion planning error, positioned at its span when DataFusion knows it.
fn df_error(src: &SourceText, e: DataFusionError, fallback: Position) -> SqlError {
    let pos = e
        .diagnostic()
        .and_then(|d| d.span)
        .map(|s| Position {
            line: s.start.line,
            column: s.start.column,
        })
        .filter(|p| p.line > 0)
        .unwrap_or(fallback);
    let text = e.strip_backtrace();
    let text = text
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("Schema error: ")
        .trim_start_matches("This feature is not implemented: ")
        .to_string();
    src.error(pos, text)
}
