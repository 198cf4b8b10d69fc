//! Flink spellings that DataFusion plans differently, rewritten on the sqlparser AST before
//! planning, so the rest of the pipeline sees plain DataFusion SQL.
//!
//! - `FLOOR(ts TO MINUTE)` → `date_trunc('minute', ts)`
//! - `CEIL(ts TO MINUTE)`  → the next boundary unless `ts` is on one.
//! - `TIMESTAMPDIFF(SECOND, a, b)` → whole units from `a` to `b` (INT, truncated toward zero as
//!   in Flink), for MILLISECOND up to WEEK; months and years have no fixed length and are left
//!   to fail as an unknown function.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    CeilFloorKind, DateTimeField, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Statement, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Rewrites every expression of a statement in place.
pub fn rewrite_statement(stmt: &mut Statement) {
    let _ = stmt.visit(&mut FlinkRewriter);
}

/// Rewrites one expression (a computed column or watermark) in place.
pub fn rewrite_expr(expr: &mut Expr) {
    let _ = expr.visit(&mut FlinkRewriter);
}

struct FlinkRewriter;

impl VisitorMut for FlinkRewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let replacement = match expr {
            Expr::Floor {
                expr: inner,
                field: CeilFloorKind::DateTimeField(f),
            } => date_unit(f).map(|u| format!("date_trunc('{u}', {inner})")),
            Expr::Ceil {
                expr: inner,
                field: CeilFloorKind::DateTimeField(f),
            } => date_unit(f).map(|u| {
                format!(
                    "CASE WHEN date_trunc('{u}', {inner}) = {inner} THEN {inner} \
                     ELSE date_trunc('{u}', {inner}) + INTERVAL '1' {u} END"
                )
            }),
            Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("timestampdiff") => {
                timestampdiff(f)
            }
            _ => None,
        };
        if let Some(sql) = replacement {
            // The text is built from an expression that already parsed, so it parses again.
            if let Ok(parsed) = Parser::new(&GenericDialect {})
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_expr())
            {
                *expr = parsed;
            }
        }
        ControlFlow::Continue(())
    }
}

/// `TIMESTAMPDIFF(unit, a, b)` as integer arithmetic on epoch milliseconds, so a 300-second gap
/// is 300 seconds exactly (floating-point epoch seconds could make it 299).
fn timestampdiff(f: &Function) -> Option<String> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let [Expr::Identifier(unit), from, to] = args.as_slice() else {
        return None;
    };
    let millis: i64 = match unit.value.to_ascii_uppercase().as_str() {
        "MILLISECOND" => 1,
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        "WEEK" => 7 * 86_400_000,
        _ => return None,
    };
    let epoch_ms = |e: &Expr| format!("CAST(CAST({e} AS TIMESTAMP(3)) AS BIGINT)");
    Some(format!(
        "CAST(({} - {}) / {millis} AS INT)",
        epoch_ms(to),
        epoch_ms(from)
    ))
}

fn date_unit(field: &DateTimeField) -> Option<&'static str> {
    Some(match field {
        DateTimeField::Year | DateTimeField::Years => "year",
        DateTimeField::Quarter => "quarter",
        DateTimeField::Month | DateTimeField::Months => "month",
        DateTimeField::Week(_) | DateTimeField::Weeks => "week",
        DateTimeField::Day | DateTimeField::Days => "day",
        DateTimeField::Hour | DateTimeField::Hours => "hour",
        DateTimeField::Minute | DateTimeField::Minutes => "minute",
        DateTimeField::Second | DateTimeField::Seconds => "second",
        DateTimeField::Millisecond | DateTimeField::Milliseconds => "millisecond",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut e = Parser::new(&GenericDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        rewrite_expr(&mut e);
        e.to_string()
    }

    #[test]
    fn floor_and_ceil_to_unit_become_date_trunc() {
        assert_eq!(rewritten("FLOOR(ts TO MINUTE)"), "date_trunc('minute', ts)");
        let ceil = rewritten("CEIL(ts TO HOUR)");
        assert!(ceil.starts_with("CASE WHEN date_trunc('hour', ts) = ts THEN ts ELSE date_trunc('hour', ts) + INTERVAL '1'"), "{ceil}");
        assert_eq!(rewritten("FLOOR(x)"), "FLOOR(x)");
    }

    #[test]
    fn timestampdiff_becomes_millisecond_arithmetic() {
        assert_eq!(
            rewritten("TIMESTAMPDIFF(MINUTE, MIN(ts), MAX(ts))"),
            "CAST((CAST(CAST(MAX(ts) AS TIMESTAMP(3)) AS BIGINT) - CAST(CAST(MIN(ts) AS TIMESTAMP(3)) AS BIGINT)) / 60000 AS INT)"
        );
        // Months have no fixed length: left alone, DataFusion names the unknown function.
        assert_eq!(
            rewritten("TIMESTAMPDIFF(MONTH, a, b)"),
            "TIMESTAMPDIFF(MONTH, a, b)"
        );
    }
}
