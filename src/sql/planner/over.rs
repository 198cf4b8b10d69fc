//! `agg(...) OVER (PARTITION BY … ORDER BY rowtime <frame>)` into an [`OverAggregate`]: Flink's
//! rules — ordered by the event-time attribute ascending, every aggregate of one SELECT over the
//! same window, frames ending at the current row.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionParams};
use datafusion::logical_expr::{
    Expr, Window, WindowFrame, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition,
};
use datafusion::physical_expr::aggregate::AggregateExprBuilder;

use super::compile::CompiledStream;
use super::job_builder::JobBuilder;
use super::{Planner, df_error, interval_millis, user_facing};
use crate::operators::aggregate::AggregateCall;
use crate::operators::over::{Frame, OverAggregate};
use crate::sql::error::{Position, SourceText, SqlError};

impl Planner {
    pub(super) fn compile_over(
        &self,
        src: &SourceText,
        window: &Window,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        let mut s = self.compile(src, &window.input, pos, job)?;
        s.check_complete(src, pos)?;
        s.require_append_only(src, pos, "an OVER aggregation")?;
        let input = window.input.schema();
        let exprs = self.expr_compiler(src, pos, job);
        let mut shape: Option<&WindowFunctionParams> = None;
        let mut calls = Vec::new();
        for e in &window.window_expr {
            let Expr::WindowFunction(f) = unalias(e) else {
                return Err(src.error(pos, format!("unexpected OVER expression {e}")));
            };
            let WindowFunction { fun, params } = f.as_ref();
            let WindowFunctionDefinition::AggregateUDF(udf) = fun else {
                return Err(src.error(
                    pos,
                    format!(
                        "{fun} OVER (…) is not supported yet: OVER takes aggregate functions (ROW_NUMBER() for deduplication and Top-N comes next)"
                    ),
                ));
            };
            if params.filter.is_some() || params.distinct {
                return Err(src.error(
                    pos,
                    "FILTER and DISTINCT are not supported in OVER aggregates",
                ));
            }
            match shape {
                None => shape = Some(params),
                Some(first)
                    if first.partition_by == params.partition_by
                        && first.order_by == params.order_by
                        && first.window_frame == params.window_frame => {}
                Some(_) => {
                    return Err(src.error(
                        pos,
                        "all OVER aggregates of one SELECT must use the same window (PARTITION BY, ORDER BY and frame), as in Flink; compute the others in a subquery",
                    ));
                }
            }
            let args = params
                .args
                .iter()
                .map(|a| exprs.compile(a, input))
                .collect::<Result<Vec<_>, _>>()?;
            let shown: Vec<String> = params
                .args
                .iter()
                .map(|a| match a {
                    Expr::Column(c) => c.name.clone(),
                    a => user_facing(&a.to_string()),
                })
                .collect();
            let label = format!("{}({})", udf.name(), shown.join(", "));
            let function = AggregateExprBuilder::new(udf.clone(), args)
                .schema(Arc::new(input.as_arrow().clone()))
                .alias(&label)
                .build()
                .map_err(|e| df_error(src, e, pos))?;
            calls.push(AggregateCall {
                function: Arc::new(function),
                filter: None,
                label,
            });
        }
        let params = shape.ok_or_else(|| src.error(pos, "an OVER without aggregates"))?;
        // Ordered by the event-time attribute, ascending.
        let rowtime = job.sources[s.source]
            .watermark
            .as_ref()
            .map(|w| w.column.clone());
        let time_column = match params.order_by.as_slice() {
            [sort] if sort.asc => match &sort.expr {
                Expr::Column(c) if Some(&c.name) == rowtime.as_ref() => input
                    .index_of_column(c)
                    .map_err(|e| df_error(src, e, pos))?,
                _ => return Err(time_order_error(src, pos, rowtime.as_deref())),
            },
            _ => return Err(time_order_error(src, pos, rowtime.as_deref())),
        };
        let frame = frame(&params.window_frame).map_err(|m| src.error(pos, m))?;
        let partition = params
            .partition_by
            .iter()
            .map(|p| exprs.compile(p, input))
            .collect::<Result<Vec<_>, _>>()?;
        let output = Arc::new(window.schema.as_arrow().clone());
        let op = OverAggregate::new(
            partition,
            &Arc::new(input.as_arrow().clone()),
            time_column,
            frame,
            calls,
            output,
        )
        .map_err(|e| src.error(pos, e.to_string()))?;
        s.operators.push(Box::new(op));
        s.schema = window.schema.clone();
        Ok(s)
    }
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

fn time_order_error(src: &SourceText, pos: Position, rowtime: Option<&str>) -> SqlError {
    src.error(
        pos,
        match rowtime {
            Some(c) => format!(
                "an OVER window must be ordered by the event-time attribute ascending: ORDER BY {c}"
            ),
            None => "an OVER window needs an event-time attribute: declare a WATERMARK on the table and ORDER BY its column".to_string(),
        },
    )
}

/// Flink's frames: from n rows or an interval before, or from the start, up to the current row.
fn frame(f: &WindowFrame) -> Result<Frame, String> {
    if f.end_bound != WindowFrameBound::CurrentRow {
        return Err(
            "an OVER frame must end at CURRENT ROW (Flink has no FOLLOWING on streams)".into(),
        );
    }
    let WindowFrameBound::Preceding(start) = &f.start_bound else {
        return Err("an OVER frame must start PRECEDING the current row".into());
    };
    let unbounded = start.is_null();
    Ok(match f.units {
        WindowFrameUnits::Rows if unbounded => Frame::UnboundedRows,
        WindowFrameUnits::Range if unbounded => Frame::UnboundedRange,
        WindowFrameUnits::Rows => match start {
            ScalarValue::UInt64(Some(n)) => Frame::Rows(*n),
            other => return Err(format!("ROWS {other} PRECEDING: expected a number of rows")),
        },
        WindowFrameUnits::Range => Frame::Range(interval_millis(start).ok_or_else(|| {
            format!("RANGE {start} PRECEDING: expected an INTERVAL in days, hours, minutes, seconds or milliseconds")
        })?),
        WindowFrameUnits::Groups => return Err("GROUPS frames are not supported (Flink has none)".into()),
    })
}
