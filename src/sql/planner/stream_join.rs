//! Joins of two streams, read in one pipeline (from one table, or two): a window join when both
//! sides are windowed and joined on window_start and window_end; an interval join when the ON
//! condition bounds one side's event time by the other's (`r.ts BETWEEN l.ts - INTERVAL … AND
//! l.ts + INTERVAL …`, or with `>=`/`<=`/`>`/`<`). Each side compiles as its own branch; the
//! join reads both.

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Join, JoinType, LogicalPlan, LogicalPlanBuilder, Operator as Op,
    TableScanBuilder,
};

use super::compile::{CompiledStream, reads_of};
use super::job_builder::JobBuilder;
use super::{Planner, df_error, interval_millis};
use crate::operators::Operators;
use crate::operators::join::{
    IntervalJoin, JoinKind, JoinSide, RegularJoin, RegularSide, TemporalJoin, WindowJoin,
    WindowJoinKind, WindowSide,
};
use crate::sql::ast::TemporalRef;
use crate::sql::error::{Position, SourceText, SqlError};
use crate::stream::changelog::with_kinds;

impl Planner {
    pub(super) fn compile_stream_join(
        &self,
        src: &SourceText,
        join: &Join,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        let left = self.compile(src, &join.left, pos, job)?;
        left.check_complete(src, pos)?;
        let right = self.compile(src, &join.right, pos, job)?;
        right.check_complete(src, pos)?;
        if left.side_output.is_some() || right.side_output.is_some() {
            return Err(src.error(
                pos,
                "late rows of a joined side cannot go to a side output yet",
            ));
        }
        let same_window = |name: &str| {
            join.on.iter().any(|(l, r)| {
                matches!((l, r), (Expr::Column(a), Expr::Column(b)) if a.name == name && b.name == name)
            })
        };
        // Only regular joins take changelogs: the others need event time, which an updating
        // result does not have.
        let append_only = |what: &str| {
            for side in [&left, &right] {
                side.require_append_only(src, pos, what)?;
            }
            Ok::<_, SqlError>(())
        };
        if same_window("window_start") && same_window("window_end") {
            append_only("a window join")?;
            return self.compile_window_join(src, join, pos, job, left, right);
        }
        let kind = match join.join_type {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            JoinType::Right => JoinKind::Right,
            JoinType::Full => JoinKind::Full,
            other => {
                return Err(src.error(
                    pos,
                    format!("{other} JOIN of two streams is not supported (INNER, LEFT, RIGHT and FULL interval joins are)"),
                ));
            }
        };
        let exprs = self.expr_compiler(src, pos, job);
        let (lschema, rschema) = (join.left.schema(), join.right.schema());
        let mut bounds = TimeBounds::default();
        let mut rest = Vec::new();
        for term in join.filter.iter().flat_map(split_conjunction) {
            if !bounds.take(term, &|c| lschema.has_column(c), &|c| rschema.has_column(c)) {
                rest.push(term.clone());
            }
        }
        let (Some(lower), Some(upper), Some(ltime), Some(rtime)) = (
            bounds.lower,
            bounds.upper,
            bounds.left.clone(),
            bounds.right.clone(),
        ) else {
            return self.compile_regular_join(src, join, kind, pos, job, left, right);
        };
        append_only("an interval join")?;
        if lower > upper {
            return Err(src.error(pos, format!("the join's time bounds are empty: right − left time in [{lower} ms, {upper} ms]")));
        }
        for (c, side) in [(&ltime, &left), (&rtime, &right)] {
            let rowtime = job.sources[side.source]
                .watermark
                .as_ref()
                .map(|w| &w.column);
            if Some(&c.name) != rowtime {
                return Err(src.error(
                    pos,
                    format!(
                        "an interval join bounds the event-time attributes of both sides; `{}` is not one{}",
                        c.flat_name(),
                        rowtime.map(|r| format!(" (its table's is `{r}`)")).unwrap_or_default()
                    ),
                ));
            }
        }
        let side = |schema: &datafusion::common::DFSchemaRef, time: &Column, keys: Vec<&Expr>| {
            Ok::<_, SqlError>(JoinSide {
                keys: keys
                    .into_iter()
                    .map(|k| exprs.compile(k, schema))
                    .collect::<Result<_, _>>()?,
                time_column: schema
                    .index_of_column(time)
                    .map_err(|e| df_error(src, e, pos))?,
                schema: Arc::new(schema.as_arrow().clone()),
            })
        };
        let lside = side(lschema, &ltime, join.on.iter().map(|(l, _)| l).collect())?;
        let rside = side(rschema, &rtime, join.on.iter().map(|(_, r)| r).collect())?;
        let residual = conjunction(rest)
            .map(|e| exprs.compile(&e, &join.schema))
            .transpose()?;
        let op = IntervalJoin::new(
            kind,
            lside,
            rside,
            (lower, upper),
            residual,
            Arc::new(join.schema.as_arrow().clone()),
        )
        .map_err(|e| src.error(pos, e.to_string()))?;
        Ok(joined(left, right, Box::new(op), join))
    }
}

impl Planner {
    /// Both sides' windows are the same (window_start and window_end among the ON keys): a
    /// window join.
    fn compile_window_join(
        &self,
        src: &SourceText,
        join: &Join,
        pos: Position,
        job: &mut JobBuilder,
        left: CompiledStream,
        right: CompiledStream,
    ) -> Result<CompiledStream, SqlError> {
        let kind = match join.join_type {
            JoinType::Inner => WindowJoinKind::Inner,
            JoinType::Left => WindowJoinKind::Left,
            JoinType::Right => WindowJoinKind::Right,
            JoinType::Full => WindowJoinKind::Full,
            JoinType::LeftSemi => WindowJoinKind::Semi(0),
            JoinType::RightSemi => WindowJoinKind::Semi(1),
            JoinType::LeftAnti => WindowJoinKind::Anti {
                side: 0,
                null_aware: join.null_aware,
            },
            JoinType::RightAnti => WindowJoinKind::Anti {
                side: 1,
                null_aware: join.null_aware,
            },
            other => {
                return Err(src.error(pos, format!("{other} window joins are not supported")));
            }
        };
        let exprs = self.expr_compiler(src, pos, job);
        let side = |schema: &datafusion::common::DFSchemaRef, keys: Vec<&Expr>| {
            let window_end = schema
                .index_of_column_by_name(None, "window_end")
                .ok_or_else(|| src.error(pos, "a window join's sides need their window_end"))?;
            Ok::<_, SqlError>(WindowSide {
                keys: keys
                    .into_iter()
                    .map(|k| exprs.compile(k, schema))
                    .collect::<Result<_, _>>()?,
                window_end,
                schema: Arc::new(schema.as_arrow().clone()),
            })
        };
        let lside = side(join.left.schema(), join.on.iter().map(|(l, _)| l).collect())?;
        let rside = side(
            join.right.schema(),
            join.on.iter().map(|(_, r)| r).collect(),
        )?;
        // The rest of the ON condition sees both sides' columns, whatever the join emits.
        let both = join
            .left
            .schema()
            .join(join.right.schema())
            .map_err(|e| df_error(src, e, pos))?;
        let residual = join
            .filter
            .as_ref()
            .map(|f| exprs.compile(f, &Arc::new(both)))
            .transpose()?;
        let op = WindowJoin::new(
            kind,
            lside,
            rside,
            residual,
            Arc::new(join.schema.as_arrow().clone()),
        )
        .map_err(|e| src.error(pos, e.to_string()))?;
        Ok(joined(left, right, Box::new(op), join))
    }
}

impl Planner {
    /// `JOIN versioned FOR SYSTEM_TIME AS OF l.ts`: an event-time temporal join. The versioned
    /// side is keyed by the ON equalities (its PRIMARY KEY when it has one) and timed by its
    /// event-time attribute.
    pub(super) fn compile_temporal_join(
        &self,
        src: &SourceText,
        join: &Join,
        temporal: &TemporalRef,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        let at = temporal.pos;
        // The probe side's time: the column the clause names. When the query reads no more of
        // it, the optimizer has dropped it; it is read again, last.
        let (qualifier, name) = match temporal.time.rsplit_once('.') {
            Some((q, n)) => (Some(q), n),
            None => (None, temporal.time.as_str()),
        };
        let qualifier = qualifier.map(datafusion::common::TableReference::bare);
        let lschema = join.left.schema();
        let (probe, ltime) = match lschema.index_of_column_by_name(qualifier.as_ref(), name) {
            Some(i) => (join.left.as_ref().clone(), i),
            None => {
                let widened = with_column_last(&join.left, name).ok_or_else(|| {
                    src.error(
                        at,
                        format!("`{}` is not a column of the joined rows", temporal.time),
                    )
                })?;
                let last = widened.schema().fields().len() - 1;
                (widened, last)
            }
        };
        let left = self.compile(src, &probe, pos, job)?;
        left.check_complete(src, pos)?;
        left.require_append_only(src, pos, "the probe side of a temporal join")?;
        // The versioned side's event time orders its versions even when the query reads no
        // more of it: its plan is widened to carry that column last. It is a table with a
        // WATERMARK and a PRIMARY KEY, or a view deduplicating one (keeping each key's last
        // row by event time), whose key is the deduplication's PARTITION BY.
        let visible = join.right.schema().fields().len();
        let (widened, key) = match self.tables.get(&temporal.table) {
            Some(table) => {
                let rowtime = table
                    .watermark
                    .as_ref()
                    .map(|w| w.column.clone())
                    .ok_or_else(|| {
                        src.error(at, format!("`{}` is not a versioned table: it needs a WATERMARK (its event time) and a PRIMARY KEY", temporal.table))
                    })?;
                let widened = with_column_last(&join.right, &rowtime).ok_or_else(|| {
                    src.error(
                        at,
                        format!(
                            "a temporal join reads `{}` itself, filtered and projected at most",
                            temporal.table
                        ),
                    )
                })?;
                (widened, table.def.primary_key.clone())
            }
            None => self.versioned_view(src, temporal, &join.right)?,
        };
        let right = self.compile(src, &widened, pos, job)?;
        right.check_complete(src, pos)?;
        let keep_unmatched = match join.join_type {
            JoinType::Inner => false,
            JoinType::Left => true,
            other => {
                return Err(src.error(
                    at,
                    format!(
                        "{other} temporal joins are not supported (INNER and LEFT are, as in Flink)"
                    ),
                ));
            }
        };
        if join.on.is_empty() {
            return Err(src.error(
                at,
                "a temporal join needs an equality on the versioned table's key in its ON",
            ));
        }
        let on: Vec<String> = join
            .on
            .iter()
            .filter_map(|(_, r)| match r {
                Expr::Column(c) => Some(c.name.clone()),
                _ => None,
            })
            .collect();
        if let Some(k) = key.iter().find(|k| !on.contains(k)) {
            return Err(src.error(at, format!("a temporal join must join on the versioned table's PRIMARY KEY; `{k}` is not in the ON equalities")));
        }
        let rtime = widened.schema().fields().len() - 1;
        let exprs = self.expr_compiler(src, pos, job);
        let keys = |schema: &datafusion::common::DFSchemaRef, side: Vec<&Expr>| {
            side.into_iter()
                .map(|k| exprs.compile(k, schema))
                .collect::<Result<Vec<_>, _>>()
        };
        let lside = JoinSide {
            keys: keys(lschema, join.on.iter().map(|(l, _)| l).collect())?,
            time_column: ltime,
            schema: left.arrow_schema(),
        };
        let rside = JoinSide {
            keys: keys(widened.schema(), join.on.iter().map(|(_, r)| r).collect())?,
            time_column: rtime,
            schema: right.arrow_schema(),
        };
        let residual = join
            .filter
            .as_ref()
            .map(|f| exprs.compile(f, &join.schema))
            .transpose()?;
        let op = TemporalJoin::new(
            lside,
            rside,
            visible,
            keep_unmatched,
            residual,
            Arc::new(join.schema.as_arrow().clone()),
        )
        .map_err(|e| src.error(pos, e.to_string()))?;
        Ok(joined(left, right, Box::new(op), join))
    }
}

impl Planner {
    /// A view usable as a versioned table: it deduplicates a table with a WATERMARK keeping
    /// each key's last row by event time (`ROW_NUMBER() OVER (PARTITION BY k ORDER BY rowtime
    /// DESC) = 1`, Flink's versioned view) and shows the event-time column. Its plan with that
    /// column added last, and its key.
    fn versioned_view(
        &self,
        src: &SourceText,
        temporal: &TemporalRef,
        plan: &LogicalPlan,
    ) -> Result<(LogicalPlan, Vec<String>), SqlError> {
        let at = temporal.pos;
        let not_versioned = || {
            src.error(
                at,
                format!(
                    "`{}` is not a versioned table: a temporal join needs a table with a WATERMARK and a PRIMARY KEY, or a view keeping each key's last row by event time (ROW_NUMBER() OVER (PARTITION BY key ORDER BY rowtime DESC) = 1)",
                    temporal.table
                ),
            )
        };
        let (keys, order) = keep_last(plan).ok_or_else(not_versioned)?;
        let rowtime = self
            .tables
            .values()
            .filter_map(|t| t.watermark.as_ref())
            .map(|w| w.column.clone())
            .find(|c| *c == order)
            .ok_or_else(not_versioned)?;
        // The query may not read the time: the plan's projections carry it up again.
        let carried = carry_column(plan, &rowtime).ok_or_else(not_versioned)?;
        let time = carried
            .schema()
            .columns()
            .into_iter()
            .find(|c| c.name == rowtime)
            .ok_or_else(not_versioned)?;
        let widened = LogicalPlanBuilder::from(carried)
            .project(columns_then(plan, time, &rowtime))
            .and_then(LogicalPlanBuilder::build)
            .map_err(|e| df_error(src, e, at))?;
        Ok((widened, keys))
    }
}

/// `plan`'s columns, then `time` named `name`: the versioned side of a temporal join, its
/// event time last.
fn columns_then(plan: &LogicalPlan, time: Column, name: &str) -> Vec<Expr> {
    let mut columns: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    columns.push(Expr::Column(time).alias(name));
    columns
}

/// `plan` with its column `name` (of some node below) kept by every projection above that
/// node; `None` when a node other than a projection, filter or alias would have to carry it.
fn carry_column(plan: &LogicalPlan, name: &str) -> Option<LogicalPlan> {
    use datafusion::logical_expr::{Filter, Projection, SubqueryAlias};
    if plan.schema().columns().iter().any(|c| c.name == name) {
        return Some(plan.clone());
    }
    let node = match plan {
        LogicalPlan::Projection(p) => {
            let input = carry_column(&p.input, name)?;
            let column = input
                .schema()
                .columns()
                .into_iter()
                .find(|c| c.name == name)?;
            let mut exprs = p.expr.clone();
            exprs.push(Expr::Column(column));
            LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input)).ok()?)
        }
        LogicalPlan::Filter(f) => {
            let input = carry_column(&f.input, name)?;
            LogicalPlan::Filter(Filter::try_new(f.predicate.clone(), Arc::new(input)).ok()?)
        }
        LogicalPlan::SubqueryAlias(a) => {
            let input = carry_column(&a.input, name)?;
            LogicalPlan::SubqueryAlias(
                SubqueryAlias::try_new(Arc::new(input), a.alias.clone()).ok()?,
            )
        }
        _ => return None,
    };
    Some(node)
}

/// The PARTITION BY columns and the ORDER BY column of the keep-last deduplication `plan`
/// makes (`ROW_NUMBER() OVER (PARTITION BY … ORDER BY c DESC)` filtered to 1), under aliases
/// and projections; `None` when it makes none.
fn keep_last(plan: &LogicalPlan) -> Option<(Vec<String>, String)> {
    ranked_first(plan, false)
}

/// [`keep_last`] below a filter to the first row (`filtered`).
fn ranked_first(plan: &LogicalPlan, filtered: bool) -> Option<(Vec<String>, String)> {
    use datafusion::logical_expr::WindowFunctionDefinition;
    let is_one = |e: &Expr| matches!(e, Expr::Literal(v, _) if v.to_string() == "1");
    match plan {
        LogicalPlan::SubqueryAlias(a) => ranked_first(&a.input, filtered),
        LogicalPlan::Projection(p) => ranked_first(&p.input, filtered),
        LogicalPlan::Filter(f) => match &f.predicate {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Op::Eq,
                right,
            }) if is_one(left) || is_one(right) => ranked_first(&f.input, true),
            _ => None,
        },
        LogicalPlan::Window(w) if filtered => {
            let [Expr::WindowFunction(f)] = w.window_expr.as_slice() else {
                return None;
            };
            let WindowFunctionDefinition::WindowUDF(udf) = &f.fun else {
                return None;
            };
            let [order] = f.params.order_by.as_slice() else {
                return None;
            };
            let (Expr::Column(c), false) = (&order.expr, order.asc) else {
                return None;
            };
            let keys = f
                .params
                .partition_by
                .iter()
                .map(|p| match p {
                    Expr::Column(k) => Some(k.name.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            (udf.name() == "row_number").then(|| (keys, c.name.clone()))
        }
        _ => None,
    }
}

/// `plan` (a table, filtered, projected and aliased) with the table's column `column` added last
/// as `column`; `None` for any other plan.
fn with_column_last(plan: &LogicalPlan, column: &str) -> Option<LogicalPlan> {
    // The same relation read whole, with the same filters and alias.
    fn whole(plan: &LogicalPlan) -> Option<LogicalPlan> {
        Some(match plan {
            LogicalPlan::TableScan(scan) => LogicalPlan::TableScan(
                TableScanBuilder::new(scan.table_name.clone(), scan.source.clone())
                    .with_filters(scan.filters.clone())
                    .with_fetch(scan.fetch)
                    .build()
                    .ok()?,
            ),
            LogicalPlan::Filter(f) => LogicalPlanBuilder::from(whole(&f.input)?)
                .filter(f.predicate.clone())
                .ok()?
                .build()
                .ok()?,
            LogicalPlan::Projection(p) => whole(&p.input)?,
            LogicalPlan::SubqueryAlias(a) => LogicalPlanBuilder::from(whole(&a.input)?)
                .alias(a.alias.clone())
                .ok()?
                .build()
                .ok()?,
            _ => return None,
        })
    }
    let read = whole(plan)?;
    // The plan's columns (they read the same relation), then the time column.
    let time = read
        .schema()
        .columns()
        .into_iter()
        .find(|c| c.name == column)?;
    LogicalPlanBuilder::from(read)
        .project(columns_then(plan, time, column))
        .ok()?
        .build()
        .ok()
}

impl Planner {
    /// A join of two streams without time bounds: every row kept (until
    /// `table.exec.state.ttl`); INNER of append-only inputs is append-only, an outer join or a
    /// join of a changelog a changelog.
    #[allow(clippy::too_many_arguments)]
    fn compile_regular_join(
        &self,
        src: &SourceText,
        join: &Join,
        kind: JoinKind,
        pos: Position,
        job: &mut JobBuilder,
        left: CompiledStream,
        right: CompiledStream,
    ) -> Result<CompiledStream, SqlError> {
        if join.on.is_empty() {
            return Err(src.error(
                pos,
                "a join of two streams needs an equality of the two sides in its ON (or time bounds, as an interval join)",
            ));
        }
        let exprs = self.expr_compiler(src, pos, job);
        let side = |schema: &datafusion::common::DFSchemaRef,
                    keys: Vec<&Expr>,
                    stream: &CompiledStream| {
            Ok::<_, SqlError>(RegularSide {
                keys: keys
                    .into_iter()
                    .map(|k| exprs.compile(k, schema))
                    .collect::<Result<_, _>>()?,
                schema: Arc::new(schema.as_arrow().clone()),
                changelog: stream.updating.is_some(),
            })
        };
        let lside = side(
            join.left.schema(),
            join.on.iter().map(|(l, _)| l).collect(),
            &left,
        )?;
        let rside = side(
            join.right.schema(),
            join.on.iter().map(|(_, r)| r).collect(),
            &right,
        )?;
        let input_updating = left.updating.clone().or_else(|| right.updating.clone());
        let residual = join
            .filter
            .as_ref()
            .map(|f| exprs.compile(f, &join.schema))
            .transpose()?;
        let plain = Arc::new(join.schema.as_arrow().clone());
        let output = if kind == JoinKind::Inner && input_updating.is_none() {
            plain
        } else {
            with_kinds(&plain)
        };
        let ttl = self.settings.state_ttl;
        let op = RegularJoin::new(kind, lside, rside, residual, output, ttl)
            .map_err(|e| src.error(pos, e.to_string()))?;
        let mut s = joined(left, right, Box::new(op), join);
        if kind != JoinKind::Inner {
            s.updating = Some(format!(
                "a {} JOIN of two streams without time bounds (a regular join)",
                join.join_type
            ));
        } else {
            s.updating = input_updating;
        }
        Ok(s)
    }
}

/// The stream of a join of two compiled sides: both branches, then `op` reading them.
fn joined(
    left: CompiledStream,
    right: CompiledStream,
    op: Box<dyn crate::stream::Operator>,
    join: &Join,
) -> CompiledStream {
    let reads = reads_of([&left, &right].into_iter());
    CompiledStream {
        source: left.source,
        operators: Operators::merge(vec![left.operators, right.operators], op),
        schema: join.schema.clone(),
        window: None,
        reads,
        side_output: None,
        updating: None,
    }
}

/// Bounds on `right.time − left.time` gathered from the ON condition's terms.
#[derive(Default, Clone)]
struct TimeBounds {
    lower: Option<i64>,
    upper: Option<i64>,
    left: Option<Column>,
    right: Option<Column>,
}

impl TimeBounds {
    /// Takes `term` when it bounds one side's time by the other's; false when it does not.
    fn take(
        &mut self,
        term: &Expr,
        is_left: &dyn Fn(&Column) -> bool,
        is_right: &dyn Fn(&Column) -> bool,
    ) -> bool {
        if let Expr::Between(b) = term {
            if b.negated {
                return false;
            }
            let low = Expr::BinaryExpr(BinaryExpr::new(b.expr.clone(), Op::GtEq, b.low.clone()));
            let high = Expr::BinaryExpr(BinaryExpr::new(b.expr.clone(), Op::LtEq, b.high.clone()));
            // Both ends, or neither.
            let mut trial = self.clone();
            if trial.take(&low, is_left, is_right) && trial.take(&high, is_left, is_right) {
                *self = trial;
                return true;
            }
            return false;
        }
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = term else {
            return false;
        };
        let (Some((a, x)), Some((b, y))) = (shifted_column(left), shifted_column(right)) else {
            return false;
        };
        // a + x op b + y, one column per side: as right − left op constant.
        let (r, l, op, c) = if is_right(&a) && is_left(&b) {
            (a, b, *op, y - x)
        } else if is_left(&a) && is_right(&b) {
            let Some(swapped) = op.swap() else {
                return false;
            };
            (b, a, swapped, x - y)
        } else {
            return false;
        };
        if self.left.as_ref().is_some_and(|t| *t != l)
            || self.right.as_ref().is_some_and(|t| *t != r)
        {
            return false;
        }
        match op {
            Op::GtEq => self.lower = Some(self.lower.map_or(c, |v| v.max(c))),
            Op::Gt => self.lower = Some(self.lower.map_or(c + 1, |v| v.max(c + 1))),
            Op::LtEq => self.upper = Some(self.upper.map_or(c, |v| v.min(c))),
            Op::Lt => self.upper = Some(self.upper.map_or(c - 1, |v| v.min(c - 1))),
            _ => return false,
        }
        self.left = Some(l);
        self.right = Some(r);
        true
    }
}

/// `column`, `column + INTERVAL`, `column - INTERVAL` (or the interval first) as the column and
/// a shift in milliseconds.
fn shifted_column(e: &Expr) -> Option<(Column, i64)> {
    match e {
        Expr::Column(c) => Some((c.clone(), 0)),
        Expr::Cast(c) => shifted_column(&c.expr),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, shift, sign) = match (shifted_column(left), interval_ms(right), op) {
                (Some((c, s)), Some(ms), Op::Plus) => (c, s, ms),
                (Some((c, s)), Some(ms), Op::Minus) => (c, s, -ms),
                _ => match (interval_ms(left), shifted_column(right), op) {
                    (Some(ms), Some((c, s)), Op::Plus) => (c, s, ms),
                    _ => return None,
                },
            };
            Some((column, shift + sign))
        }
        _ => None,
    }
}

/// A constant interval without months, in milliseconds.
fn interval_ms(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => interval_millis(v),
        _ => None,
    }
}
