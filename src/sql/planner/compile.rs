//! From an optimized logical plan to operators: table scans become shared sources, filters and
//! projections compiled physical expressions; window, MATCH_RECOGNIZE and join nodes go to their
//! own modules. Expressions are compiled once, here, never per batch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, LogicalPlan, Union};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, lit};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, ExprWithAlias};

use super::job_builder::JobBuilder;
use super::window::uses_window_columns;
use super::{Planner, df_error};
use crate::operators::changelog_normalize::ChangelogNormalize;
use crate::operators::{Filter, Operators, Projection, UnionAll};
use crate::plan::SinkNode;
use crate::sql::error::{Position, SourceText, SqlError};
use crate::sql::functions::CurrentWatermark;
use crate::sql::rewrite::rewrite_expr;
use crate::sql::window::WindowTvf;
use crate::stream::changelog::{OP_COLUMN, RowKind, with_kinds};
use crate::stream::{Operator, WatermarkCell};

impl Planner {
    /// A SQL expression over `schema`, rewritten and planned (not yet compiled).
    pub(super) fn logical_sql_expr(
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
    pub(super) fn compile_sql_expr(
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

    pub(super) fn expr_compiler<'a>(
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
    pub(super) fn compile(
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
                let columns = scan.projection.clone().unwrap_or_else(|| (0..table.row_schema.fields().len()).collect()).into_iter().collect();
                let reads = BTreeMap::from([(source, columns)]);
                let mut operators: Vec<Box<dyn Operator>> = Vec::new();
                // An upsert table's rows become a changelog first, keyed by its PRIMARY KEY.
                let upserts = table.connector.reads_upserts();
                if upserts {
                    operators.push(self.changelog_normalize(src, pos, table)?);
                }
                let changes = upserts || table.connector.reads_changes();
                if let Some(select) = scan.projection.as_ref().and_then(|i| column_selection(i, &table.row_schema, &scan.projected_schema, changes)) {
                    operators.push(select);
                }
                let filtered = Arc::new(scan.projected_schema.as_arrow().clone());
                let filtered = if changes { with_kinds(&filtered) } else { filtered };
                for f in &scan.filters {
                    let pred = exprs.compile(f, &scan.projected_schema)?;
                    operators.push(Box::new(Filter::new(pred, filtered.clone())));
                }
                let mut chain = Operators::reading(source);
                for op in operators {
                    chain.push(op);
                }
                let updating = match (upserts, changes) {
                    (true, _) => Some(format!("the upsert-kafka table `{name}`")),
                    (false, true) => Some(format!("the debezium-json table `{name}`")),
                    _ => None,
                };
                Ok(CompiledStream { source, operators: chain, schema: scan.projected_schema.clone(), window: None, reads, side_output: None, updating })
            }
            LogicalPlan::Filter(f) => {
                if let Some(ranked) = self.compile_rank_filter(src, f, pos, job)? {
                    return Ok(ranked);
                }
                let mut s = self.compile(src, &f.input, pos, job)?;
                if s.window.is_some() && uses_window_columns(&f.predicate) {
                    return Err(src.error(pos, "a WHERE on window_start/window_end before the GROUP BY is not supported; filter in HAVING or after the aggregation"));
                }
                let pred = exprs.compile(&f.predicate, f.input.schema())?;
                s.operators.push(Box::new(Filter::new(pred, s.arrow_schema())));
                Ok(s)
            }
            LogicalPlan::Projection(p) => {
                let s = self.compile(src, &p.input, pos, job)?;
                self.project(src, s, p, pos, job)
            }
            LogicalPlan::Union(u) => self.compile_union(src, u, pos, job),
            LogicalPlan::Window(w) => self.compile_over(src, w, pos, job),
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

impl Planner {
    /// `p` over the compiled stream of its input.
    pub(super) fn project(
        &self,
        src: &SourceText,
        mut s: CompiledStream,
        p: &datafusion::logical_expr::Projection,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        let exprs = self.expr_compiler(src, pos, job);
        if s.window.is_some()
            && p.expr
                .iter()
                .any(|e| !matches!(e, Expr::Column(_)) && uses_window_columns(e))
        {
            return Err(src.error(pos, "window columns can only be grouped by in a window aggregation, not computed on before it"));
        }
        // `SELECT *` of a view or window input: the batch already is the projection.
        let input = p.input.schema();
        let identity = p.expr.len() == input.fields().len()
            && p.expr.iter().enumerate().all(
                |(i, e)| matches!(e, Expr::Column(c) if input.index_of_column(c).ok() == Some(i)),
            )
            && p.schema
                .fields()
                .iter()
                .zip(input.fields())
                .all(|(a, b)| a.name() == b.name());
        if !identity {
            let mut columns = p
                .expr
                .iter()
                .map(|e| exprs.compile(e, input))
                .collect::<Result<Vec<_>, _>>()?;
            let mut output = Arc::new(p.schema.as_arrow().clone());
            if s.updating.is_some() {
                // The row kind passes through.
                let at = input.fields().len();
                columns.push(Arc::new(Column::new(OP_COLUMN, at)));
                output = with_kinds(&output);
            }
            s.operators.push(Box::new(Projection::new(columns, output)));
        }
        s.schema = p.schema.clone();
        Ok(s)
    }
}

impl Planner {
    /// `UNION ALL`: each branch compiled from the shared input, then a union of their rows.
    fn compile_union(
        &self,
        src: &SourceText,
        union: &Union,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        let mut branches = Vec::with_capacity(union.inputs.len());
        for input in &union.inputs {
            let branch = self.compile(src, input, pos, job)?;
            branch.check_complete(src, pos)?;
            branches.push(branch);
        }
        let source = branches[0].source;
        let mut side_outputs = branches.iter().filter_map(|b| b.side_output.as_ref());
        if side_outputs.nth(1).is_some() {
            return Err(src.error(
                pos,
                "only one branch of a UNION ALL may send late rows to a side output",
            ));
        }
        // A union with an updating branch is a changelog: the other branches' rows are inserts.
        let updating = branches.iter().find_map(|b| b.updating.clone());
        let mut schema = Arc::new(union.schema.as_arrow().clone());
        if updating.is_some() {
            schema = with_kinds(&schema);
            for b in branches.iter_mut().filter(|b| b.updating.is_none()) {
                let input = b.arrow_schema();
                let mut columns: Vec<Arc<dyn PhysicalExpr>> = (0..input.fields().len())
                    .map(|i| Arc::new(Column::new(input.field(i).name(), i)) as _)
                    .collect();
                columns.push(lit(RowKind::Insert.code()));
                b.operators
                    .push(Box::new(Projection::new(columns, with_kinds(&input))));
            }
        }
        let reads = reads_of(branches.iter());
        let side_output = branches.iter_mut().find_map(|b| b.side_output.take());
        let parts: Vec<Operators> = branches.into_iter().map(|b| b.operators).collect();
        let n = parts.len();
        Ok(CompiledStream {
            source,
            operators: Operators::merge(parts, Box::new(UnionAll::new(schema, n))),
            schema: union.schema.clone(),
            window: None,
            reads,
            side_output,
            updating,
        })
    }
}

/// The operator keeping columns `indices` of `input` (a scan's projection), or `None` when that
/// is every column in order.
/// The scan's columns picked from the row's (`None` when it reads them all in order); with
/// `kinds`, the row-kind column after them goes along.
pub(super) fn column_selection(
    indices: &[usize],
    input: &Schema,
    output: &DFSchemaRef,
    kinds: bool,
) -> Option<Box<dyn Operator>> {
    if indices.iter().copied().eq(0..input.fields().len()) {
        return None;
    }
    let mut exprs: Vec<Arc<dyn PhysicalExpr>> = indices
        .iter()
        .map(|&i| Arc::new(Column::new(input.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
        .collect();
    let mut schema = Arc::new(output.as_arrow().clone());
    if kinds {
        exprs.push(Arc::new(Column::new(OP_COLUMN, input.fields().len())));
        schema = with_kinds(&schema);
    }
    Some(Box::new(Projection::new(exprs, schema)))
}

impl Planner {
    /// The operator making an upsert table's rows a changelog, keyed by its PRIMARY KEY.
    fn changelog_normalize(
        &self,
        src: &SourceText,
        pos: Position,
        table: &crate::sql::catalog::Table,
    ) -> Result<Box<dyn Operator>, SqlError> {
        let keys = table
            .def
            .primary_key
            .iter()
            .map(|k| {
                let i = table
                    .row_schema
                    .index_of(k)
                    .map_err(|e| src.error(pos, e.to_string()))?;
                Ok(Arc::new(Column::new(k, i)) as Arc<dyn PhysicalExpr>)
            })
            .collect::<Result<Vec<_>, SqlError>>()?;
        let op = ChangelogNormalize::new(keys, table.row_schema.clone())
            .map_err(|e| src.error(pos, e.to_string()))?;
        Ok(Box::new(op))
    }
}

pub(super) struct CompiledStream {
    pub(super) source: usize,
    pub(super) operators: Operators,
    pub(super) schema: DFSchemaRef,
    /// Set while the stream is a window relation not yet aggregated.
    pub(super) window: Option<WindowTvf>,
    /// Row columns of each source that this stream reads.
    pub(super) reads: BTreeMap<usize, BTreeSet<usize>>,
    /// Where the stream's late rows go, when a window or MATCH_RECOGNIZE in it sends them away.
    pub(super) side_output: Option<SinkNode>,
    /// Set when rows may be updated or deleted later (a changelog, see
    /// [`crate::stream::changelog`]): what makes them so, for error messages.
    pub(super) updating: Option<String>,
}

/// The columns the streams read, together.
pub(super) fn reads_of<'a>(
    streams: impl Iterator<Item = &'a CompiledStream>,
) -> BTreeMap<usize, BTreeSet<usize>> {
    let mut reads: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for s in streams {
        for (source, columns) in &s.reads {
            reads.entry(*source).or_default().extend(columns);
        }
    }
    reads
}

impl CompiledStream {
    /// The schema of the stream's batches: its columns, and the row kind when it updates.
    pub(super) fn arrow_schema(&self) -> SchemaRef {
        let columns = self.schema.as_arrow();
        match self.updating {
            Some(_) => with_kinds(columns),
            None => Arc::new(columns.clone()),
        }
    }

    /// Refuses a changelog where only inserted rows make sense (`consumer` says where), in
    /// Flink's terms.
    pub(super) fn require_append_only(
        &self,
        src: &SourceText,
        pos: Position,
        consumer: &str,
    ) -> Result<(), SqlError> {
        match &self.updating {
            Some(producer) => Err(src.error(
                pos,
                format!(
                    "{consumer} doesn't support consuming update and delete changes, which are produced by {producer}"
                ),
            )),
            None => Ok(()),
        }
    }

    /// A window relation must end in its aggregation: its window columns are placeholders.
    pub(super) fn check_complete(&self, src: &SourceText, pos: Position) -> Result<(), SqlError> {
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
pub(super) struct ExprCompiler<'a> {
    pub(super) state: SessionState,
    pub(super) cell: WatermarkCell,
    pub(super) src: &'a SourceText,
    pub(super) pos: Position,
}

impl ExprCompiler<'_> {
    pub(super) fn compile(
        &self,
        e: &Expr,
        schema: &DFSchemaRef,
    ) -> Result<Arc<dyn PhysicalExpr>, SqlError> {
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
pub(super) fn physical_expr(
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
pub(super) fn bind_current_watermark(e: Expr, cell: &WatermarkCell) -> Expr {
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

pub(super) fn node_name(plan: &LogicalPlan) -> String {
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
