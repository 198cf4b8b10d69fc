//! `GROUP BY` without a window into a [`GroupAggregate`]: an updating aggregate whose result is
//! a changelog. Over an updating input the aggregates take rows back, so only functions that can
//! (and whose checkpointed state still can) are allowed.

use datafusion::logical_expr::{Aggregate, Expr};

use super::compile::CompiledStream;
use super::job_builder::JobBuilder;
use super::{Planner, user_facing};
use crate::operators::group_aggregate::GroupAggregate;
use crate::sql::error::{Position, SourceText, SqlError};
use crate::stream::changelog::with_kinds;

/// Functions that take rows back (MIN and MAX keep their values with counts).
const RETRACTABLE: &[&str] = &["count", "sum", "avg", "min", "max"];

impl Planner {
    pub(super) fn compile_group_aggregate(
        &self,
        src: &SourceText,
        agg: &Aggregate,
        pos: Position,
        job: &mut JobBuilder,
        mut s: CompiledStream,
    ) -> Result<CompiledStream, SqlError> {
        if agg
            .group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
        {
            return Err(src.error(pos, "GROUPING SETS, ROLLUP and CUBE are not supported yet"));
        }
        let exprs = self.expr_compiler(src, pos, job);
        let input = agg.input.schema();
        let keys = agg
            .group_expr
            .iter()
            .map(|g| exprs.compile(g, input))
            .collect::<Result<Vec<_>, _>>()?;
        let calls = self.aggregate_calls(src, agg, pos, &exprs, "aggregations")?;
        let retracting = s.updating.is_some();
        if retracting
            && let Some(c) = calls
                .iter()
                .find(|c| !RETRACTABLE.contains(&c.function.fun().name()))
        {
            return Err(src.error(
                pos,
                format!(
                    "{} over an updating input (produced by {}) is not supported yet: COUNT, SUM, AVG, MIN and MAX are",
                    c.label,
                    s.updating.as_deref().unwrap_or_default()
                ),
            ));
        }
        let output = with_kinds(agg.schema.as_arrow());
        let ttl = self.settings.state_ttl;
        let op = GroupAggregate::new(keys, &s.arrow_schema(), calls, retracting, output, ttl)
            .map_err(|e| src.error(pos, e.to_string()))?;
        s.operators.push(Box::new(op));
        s.schema = agg.schema.clone();
        let keys: Vec<String> = agg
            .group_expr
            .iter()
            .map(|g| user_facing(&g.to_string()))
            .collect();
        s.updating = Some(if keys.is_empty() {
            "an aggregate without GROUP BY and without a window (an updating aggregate)".to_string()
        } else {
            format!(
                "GROUP BY {} without a window (an updating aggregate)",
                keys.join(", ")
            )
        });
        Ok(s)
    }
}
