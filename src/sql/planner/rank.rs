//! `ROW_NUMBER() OVER (…)` filtered to the first rows (`rn <= N`, `rn < N`, `rn = 1`), Flink's
//! two patterns: window Top-N (partitioned by window_start and window_end of a window
//! aggregation: append-only) and deduplication (ordered by the event-time attribute, `rn = 1`:
//! keep-first is append-only, keep-last a changelog); any other Top-N — and any over a
//! changelog — ranks as rows come and go, a changelog of rank changes.

use std::sync::Arc;

use arrow::compute::SortOptions;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::WindowFunctionDefinition;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, LogicalPlan, Operator as Op};

use super::Planner;
use super::compile::CompiledStream;
use super::job_builder::JobBuilder;
use crate::operators::deduplicate::{KeepFirst, KeepLast};
use crate::operators::top_n::UpdatingTopN;
use crate::operators::window::WindowTopN;
use crate::sql::error::{Position, SourceText, SqlError};
use crate::stream::Operator;
use crate::stream::changelog::with_kinds;

impl Planner {
    /// The filter over a ROW_NUMBER, compiled as Top-N or deduplication; `None` when `filter` is
    /// not one.
    pub(super) fn compile_rank_filter(
        &self,
        src: &SourceText,
        filter: &Filter,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<Option<CompiledStream>, SqlError> {
        // The window, maybe under projections that keep its rank column.
        let mut projections = Vec::new();
        let mut below = filter.input.as_ref();
        while let LogicalPlan::Projection(p) = below {
            projections.push(p);
            below = p.input.as_ref();
        }
        let LogicalPlan::Window(window) = below else {
            return Ok(None);
        };
        let [Expr::WindowFunction(f)] = window.window_expr.as_slice() else {
            return Ok(None);
        };
        let WindowFunction { fun, params } = f.as_ref();
        let WindowFunctionDefinition::WindowUDF(udf) = fun else {
            return Ok(None);
        };
        if udf.name() != "row_number" {
            return Ok(None);
        }
        let rank_column = window.schema.field(window.schema.fields().len() - 1).name();
        let Some(limit) = limit(&filter.predicate, rank_column) else {
            return Err(src.error(
                pos,
                "a ROW_NUMBER() must be filtered to its first rows (rn <= N, rn < N or rn = 1) for Top-N or deduplication",
            ));
        };
        let mut s = self.compile(src, &window.input, pos, job)?;
        s.check_complete(src, pos)?;
        let input = window.input.schema();
        let exprs = self.expr_compiler(src, pos, job);
        let partition = params
            .partition_by
            .iter()
            .map(|p| exprs.compile(p, input))
            .collect::<Result<Vec<_>, _>>()?;
        let input_arrow = Arc::new(input.as_arrow().clone());
        let output = Arc::new(window.schema.as_arrow().clone());
        let named = |name: &str| {
            params
                .partition_by
                .iter()
                .any(|p| matches!(p, Expr::Column(c) if c.name == name))
        };
        let order = params
            .order_by
            .iter()
            .map(|o| {
                let options = SortOptions {
                    descending: !o.asc,
                    nulls_first: o.nulls_first,
                };
                Ok((exprs.compile(&o.expr, input)?, options))
            })
            .collect::<Result<Vec<_>, SqlError>>()?;
        // Over a changelog (the counts of an updating aggregate, say) only the general Top-N
        // applies: it takes retracted rows out of the ranking.
        let changelog = s.updating.is_some();
        if named("window_start") && named("window_end") && !changelog {
            let window_end = input
                .index_of_column_by_name(None, "window_end")
                .ok_or_else(|| src.error(pos, "no window_end column under the Top-N"))?;
            let op = WindowTopN::new(partition, order, window_end, limit, input_arrow, output)
                .map_err(|e| src.error(pos, e.to_string()))?;
            s.operators.push(Box::new(op));
            s.schema = window.schema.clone();
            return self.reproject(src, s, projections, pos, job).map(Some);
        }
        let rowtime = job.sources[s.source]
            .watermark
            .as_ref()
            .map(|w| w.column.clone());
        let by_rowtime = match params.order_by.as_slice() {
            [o] => matches!(&o.expr, Expr::Column(c) if Some(&c.name) == rowtime.as_ref())
                .then_some(o.asc),
            _ => None,
        };
        match (by_rowtime, limit) {
            (Some(ascending), 1) if !changelog => {
                let column = rowtime.expect("ordered by it");
                let time_column =
                    input
                        .index_of_column_by_name(None, &column)
                        .ok_or_else(|| {
                            src.error(pos, format!("no `{column}` under the deduplication"))
                        })?;
                let op: Box<dyn Operator> = if ascending {
                    Box::new(
                        KeepFirst::new(partition, time_column, input_arrow, output)
                            .map_err(|e| src.error(pos, e.to_string()))?,
                    )
                } else {
                    s.updating = Some(format!(
                        "ROW_NUMBER() OVER (… ORDER BY {column} DESC) = 1 (deduplication keeping the last row)"
                    ));
                    Box::new(
                        KeepLast::new(partition, time_column, input_arrow, with_kinds(&output))
                            .map_err(|e| src.error(pos, e.to_string()))?,
                    )
                };
                s.operators.push(op);
                s.schema = window.schema.clone();
                self.reproject(src, s, projections, pos, job).map(Some)
            }
            _ => {
                // Ranks that change as rows come: a changelog.
                let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                let op = UpdatingTopN::new(
                    partition,
                    order,
                    limit,
                    input_arrow,
                    changelog,
                    with_kinds(&output),
                )
                .map_err(|e| src.error(pos, e.to_string()))?;
                s.operators.push(Box::new(op));
                s.schema = window.schema.clone();
                s.updating = Some(format!(
                    "ROW_NUMBER() OVER (…) <= {limit} (Top-N outside a window)"
                ));
                self.reproject(src, s, projections, pos, job).map(Some)
            }
        }
    }
}

impl Planner {
    /// The projections between the rank filter and its window, innermost first, over `s`.
    fn reproject(
        &self,
        src: &SourceText,
        mut s: CompiledStream,
        projections: Vec<&datafusion::logical_expr::Projection>,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        for p in projections.into_iter().rev() {
            s = self.project(src, s, p, pos, job)?;
        }
        Ok(s)
    }
}

/// N of `rank <= N`, `rank < N + 1`, `rank = 1` (either side); `None` for any other predicate.
fn limit(predicate: &Expr, rank: &str) -> Option<u64> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else {
        return None;
    };
    let is_rank = |e: &Expr| matches!(e, Expr::Column(c) if c.name == rank);
    let number = |e: &Expr| match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::UInt64(Some(n)) => Some(*n),
            ScalarValue::Int64(Some(n)) => u64::try_from(*n).ok(),
            ScalarValue::Int32(Some(n)) => u64::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    };
    let (op, n) = if is_rank(left) {
        (*op, number(right)?)
    } else if is_rank(right) {
        (op.swap()?, number(left)?)
    } else {
        return None;
    };
    match op {
        Op::LtEq => Some(n),
        Op::Lt => n.checked_sub(1),
        Op::Eq if n == 1 => Some(1),
        _ => None,
    }
    .filter(|n| *n > 0)
}
