//! Window table-valued functions: `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))`
//! and HOP, CUMULATE, SESSION, with positional or named (`SIZE => ...`) arguments.
//!
//! sqlparser has no grammar for `TABLE t` or `DESCRIPTOR(...)` arguments, so the dialect layer
//! finds each window TVF in a statement's tokens, reads it here, and puts a synthetic relation
//! name in its place (`__window_0`). The planner registers that relation with the input's
//! columns plus `window_start`, `window_end` and `window_time`, and compiles an aggregation over
//! it into a window operator.

use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan, Word};

use super::dialect::{interval_millis, is_word, matching_paren, parser_error, sql_parser};
use super::error::{Position, SourceText, SqlError};
use crate::operators::window::WindowKind;

#[derive(Debug, Clone)]
pub struct WindowTvf {
    /// The synthetic relation name standing in the statement.
    pub relation: String,
    pub kind: WindowKind,
    /// The table or view windowed.
    pub input: String,
    pub time_column: String,
    /// SESSION's `PARTITION BY` columns.
    pub partition_by: Vec<String>,
    pub pos: Position,
}

pub const WINDOW_COLUMNS: [&str; 3] = ["window_start", "window_end", "window_time"];

/// Replaces each `TABLE(<window tvf>(...))` in `tokens` by a synthetic relation name; returns the
/// new tokens and the windows found (numbered from `first_id`).
pub fn extract_window_tvfs(
    src: &SourceText,
    tokens: &[TokenWithSpan],
    first_id: usize,
) -> Result<(Vec<TokenWithSpan>, Vec<WindowTvf>), SqlError> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut windows = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let is_tvf = is_word(&tokens[i].token, "TABLE")
            && tokens.get(i + 1).is_some_and(|t| t.token == Token::LParen)
            && tokens.get(i + 2).is_some_and(|t| {
                ["TUMBLE", "HOP", "CUMULATE", "SESSION"]
                    .iter()
                    .any(|w| is_word(&t.token, w))
            })
            && tokens.get(i + 3).is_some_and(|t| t.token == Token::LParen);
        if !is_tvf {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let func = match &tokens[i + 2].token {
            Token::Word(w) => w.value.to_ascii_uppercase(),
            _ => unreachable!("checked above"),
        };
        let args_start = i + 4;
        let args_end = matching_paren(tokens, i + 3)
            .ok_or_else(|| src.error(tokens[i].span.start.into(), format!("unclosed {func}(")))?;
        let close_table = args_end + 1;
        if tokens.get(close_table).map(|t| &t.token) != Some(&Token::RParen) {
            return Err(src.error(
                tokens[i].span.start.into(),
                format!("expected `)` closing TABLE({func}(...))"),
            ));
        }
        let relation = format!("__window_{}", first_id + windows.len());
        let window = parse_window(
            src,
            &func,
            &tokens[args_start..args_end],
            tokens[i].span.start.into(),
            relation.clone(),
        )?;
        windows.push(window);
        let span = Span::new(tokens[i].span.start, tokens[close_table].span.end);
        out.push(TokenWithSpan::new(
            Token::Word(Word {
                value: relation,
                quote_style: None,
                keyword: datafusion::sql::sqlparser::keywords::Keyword::NoKeyword,
            }),
            span,
        ));
        i = close_table + 1;
    }
    Ok((out, windows))
}

/// Splits arguments at top-level commas.
fn split_args(tokens: &[TokenWithSpan]) -> Vec<&[TokenWithSpan]> {
    let mut args = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (j, t) in tokens.iter().enumerate() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                args.push(&tokens[start..j]);
                start = j + 1;
            }
            _ => {}
        }
    }
    if start < tokens.len() {
        args.push(&tokens[start..]);
    }
    args
}

fn parse_window(
    src: &SourceText,
    func: &str,
    tokens: &[TokenWithSpan],
    pos: Position,
    relation: String,
) -> Result<WindowTvf, SqlError> {
    let params: &[&str] = match func {
        "TUMBLE" => &["DATA", "TIMECOL", "SIZE", "OFFSET"],
        "HOP" => &["DATA", "TIMECOL", "SLIDE", "SIZE", "OFFSET"],
        "CUMULATE" => &["DATA", "TIMECOL", "STEP", "SIZE", "OFFSET"],
        _ => &["DATA", "TIMECOL", "GAP"],
    };
    let mut values: Vec<Option<&[TokenWithSpan]>> = vec![None; params.len()];
    for (n, arg) in split_args(tokens).into_iter().enumerate() {
        let at: Position = arg.first().map_or(pos, |t| t.span.start.into());
        let (slot, body) = match (arg.first().map(|t| &t.token), arg.get(1).map(|t| &t.token)) {
            (Some(Token::Word(w)), Some(Token::RArrow)) => {
                let name = w.value.to_ascii_uppercase();
                let slot = params.iter().position(|p| *p == name).ok_or_else(|| {
                    src.error(
                        at,
                        format!(
                            "{func} has no argument `{}`; its arguments: {}",
                            w.value,
                            params.join(", ")
                        ),
                    )
                })?;
                (slot, &arg[2..])
            }
            _ => (n, arg),
        };
        if slot >= params.len() {
            return Err(src.error(
                at,
                format!(
                    "{func} takes at most {} arguments ({})",
                    params.len(),
                    params.join(", ")
                ),
            ));
        }
        values[slot] = Some(body);
    }
    let required = if func == "SESSION" {
        3
    } else {
        params.len() - 1
    };
    for (k, p) in params.iter().enumerate().take(required) {
        if values[k].is_none() {
            return Err(src.error(
                pos,
                format!(
                    "{func} needs its `{p}` argument: {func}({})",
                    params.join(", ")
                ),
            ));
        }
    }
    let (input, partition_by) = parse_data_arg(src, values[0].expect("checked"), pos)?;
    let time_column = parse_descriptor(src, values[1].expect("checked"), pos)?;
    let duration = |k: usize| -> Result<i64, SqlError> {
        match values.get(k).copied().flatten() {
            None => Ok(0),
            Some(t) => interval_arg(src, t, pos),
        }
    };
    let kind = match func {
        "TUMBLE" => WindowKind::Tumble {
            size: duration(2)?,
            offset: duration(3)?,
        },
        "HOP" => WindowKind::Hop {
            slide: duration(2)?,
            size: duration(3)?,
            offset: duration(4)?,
        },
        "CUMULATE" => WindowKind::Cumulate {
            step: duration(2)?,
            size: duration(3)?,
            offset: duration(4)?,
        },
        _ => WindowKind::Session { gap: duration(2)? },
    };
    validate(src, func, kind, pos)?;
    if func != "SESSION" && !partition_by.is_empty() {
        return Err(src.error(
            pos,
            format!("PARTITION BY belongs to SESSION windows; {func} groups by the GROUP BY keys"),
        ));
    }
    Ok(WindowTvf {
        relation,
        kind,
        input,
        time_column,
        partition_by,
        pos,
    })
}

fn validate(src: &SourceText, func: &str, kind: WindowKind, pos: Position) -> Result<(), SqlError> {
    let positive = |what: &str, v: i64| {
        if v > 0 {
            Ok(())
        } else {
            Err(src.error(pos, format!("{func} {what} must be a positive interval")))
        }
    };
    match kind {
        WindowKind::Tumble { size, .. } => positive("size", size),
        WindowKind::Hop { slide, size, .. } => {
            positive("slide", slide)?;
            positive("size", size)?;
            if size % slide != 0 {
                return Err(src.error(
                    pos,
                    "HOP with a slide that does not divide the size is not supported",
                ));
            }
            Ok(())
        }
        WindowKind::Cumulate { step, size, .. } => {
            positive("step", step)?;
            positive("size", size)?;
            if size % step != 0 {
                return Err(src.error(
                    pos,
                    "CUMULATE with a step that does not divide the max size is not supported",
                ));
            }
            Ok(())
        }
        WindowKind::Session { gap } => positive("gap", gap),
    }
}

/// `TABLE name [PARTITION BY col | PARTITION BY (col, ...)]`.
fn parse_data_arg(
    src: &SourceText,
    t: &[TokenWithSpan],
    pos: Position,
) -> Result<(String, Vec<String>), SqlError> {
    let at: Position = t.first().map_or(pos, |x| x.span.start.into());
    let mut p = sql_parser(t);
    if !p.parse_keyword(datafusion::sql::sqlparser::keywords::Keyword::TABLE) {
        return Err(src.error(at, "the first window argument is `TABLE name`"));
    }
    let name = p
        .parse_object_name(false)
        .map_err(|e| parser_error(src, e, at))?
        .to_string();
    let mut partition_by = Vec::new();
    if p.parse_keywords(&[
        datafusion::sql::sqlparser::keywords::Keyword::PARTITION,
        datafusion::sql::sqlparser::keywords::Keyword::BY,
    ]) {
        let parens = p.consume_token(&Token::LParen);
        loop {
            partition_by.push(
                p.parse_identifier()
                    .map_err(|e| parser_error(src, e, at))?
                    .value,
            );
            if !(parens && p.consume_token(&Token::Comma)) {
                break;
            }
        }
        if parens {
            p.expect_token(&Token::RParen)
                .map_err(|e| parser_error(src, e, at))?;
        }
    }
    if p.peek_token().token != Token::EOF {
        return Err(src.error(
            p.peek_token().span.start.into(),
            "unexpected token in the window's TABLE argument",
        ));
    }
    Ok((name, partition_by))
}

/// `DESCRIPTOR(col)`.
fn parse_descriptor(
    src: &SourceText,
    t: &[TokenWithSpan],
    pos: Position,
) -> Result<String, SqlError> {
    let at: Position = t.first().map_or(pos, |x| x.span.start.into());
    match t {
        [
            d,
            open,
            TokenWithSpan {
                token: Token::Word(col),
                ..
            },
            close,
        ] if is_word(&d.token, "DESCRIPTOR")
            && open.token == Token::LParen
            && close.token == Token::RParen =>
        {
            Ok(col.value.clone())
        }
        _ => Err(src.error(at, "the time argument is `DESCRIPTOR(rowtime_column)`")),
    }
}

fn interval_arg(src: &SourceText, t: &[TokenWithSpan], pos: Position) -> Result<i64, SqlError> {
    let at: Position = t.first().map_or(pos, |x| x.span.start.into());
    let expr = sql_parser(t)
        .parse_expr()
        .map_err(|e| parser_error(src, e, at))?;
    interval_millis(&expr).ok_or_else(|| {
        src.error(
            at,
            format!("expected an interval such as INTERVAL '1' MINUTE, found {expr}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::dialect::tokenize;

    fn extract(sql: &str) -> Result<(String, Vec<WindowTvf>), SqlError> {
        let src = SourceText::new("w.sql", sql);
        let tokens = tokenize(sql).unwrap();
        let (out, w) = extract_window_tvfs(&src, &tokens, 0)?;
        Ok((
            out.iter()
                .map(|t| t.token.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            w,
        ))
    }

    #[test]
    fn reads_each_window_kind_positional_and_named() {
        let (text, w) = extract(
            "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY x",
        )
        .unwrap();
        assert_eq!(text, "SELECT * FROM __window_0 GROUP BY x");
        assert_eq!(
            (w[0].input.as_str(), w[0].time_column.as_str()),
            ("t", "ts")
        );
        assert_eq!(
            w[0].kind,
            WindowKind::Tumble {
                size: 60_000,
                offset: 0
            }
        );

        let (_, w) = extract("FROM TABLE(HOP(DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), SIZE => INTERVAL '5' MINUTES, SLIDE => INTERVAL '1' MINUTE))").unwrap();
        assert_eq!(
            w[0].kind,
            WindowKind::Hop {
                slide: 60_000,
                size: 300_000,
                offset: 0
            }
        );

        let (_, w) = extract("FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND, INTERVAL '1' SECOND))").unwrap();
        assert_eq!(
            w[0].kind,
            WindowKind::Cumulate {
                step: 2_000,
                size: 10_000,
                offset: 1_000
            }
        );

        let (_, w) = extract("FROM TABLE(SESSION(TABLE t PARTITION BY vehicle_id, DESCRIPTOR(ts), INTERVAL '5' MINUTE))").unwrap();
        assert_eq!(w[0].kind, WindowKind::Session { gap: 300_000 });
        assert_eq!(w[0].partition_by, vec!["vehicle_id"]);
    }

    #[test]
    fn unsupported_and_malformed_windows_are_named() {
        let err = extract(
            "FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '2' MINUTE, INTERVAL '5' MINUTE))",
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("HOP with a slide that does not divide the size is not supported"),
            "{err}"
        );
        let err = extract("FROM TABLE(TUMBLE(TABLE t, ts, INTERVAL '1' MINUTE))").unwrap_err();
        assert!(err.message.contains("DESCRIPTOR(rowtime_column)"), "{err}");
        let err = extract("FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts)))").unwrap_err();
        assert!(err.message.contains("needs its `SIZE` argument"), "{err}");
    }
}

/// The legacy group-window form many Flink pipelines use,
/// `SELECT k, TUMBLE_START(ts, i) ... FROM t GROUP BY k, TUMBLE(ts, i)` (and HOP, SESSION),
/// rewritten into the TVF form over a window relation: the FROM table becomes the relation,
/// the group window becomes `window_start, window_end` (plus `window_time` when `*_ROWTIME` is
/// selected), and `*_START` / `*_END` / `*_ROWTIME` become those columns.
pub mod legacy {
    use std::ops::ControlFlow;

    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectName,
        Query, SetExpr, TableFactor, VisitMut, VisitorMut,
    };

    use super::{WindowKind, WindowTvf, interval_millis};
    use crate::sql::error::{Position, SourceText, SqlError};

    /// Rewrites every legacy group window in a statement or query, appending the windows it
    /// creates.
    pub fn rewrite<T: VisitMut>(
        src: &SourceText,
        node: &mut T,
        pos: Position,
        windows: &mut Vec<WindowTvf>,
    ) -> Result<(), SqlError> {
        let mut v = Rewriter {
            src,
            pos,
            windows,
            error: None,
        };
        let _ = node.visit(&mut v);
        match v.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    struct Rewriter<'a> {
        src: &'a SourceText,
        pos: Position,
        windows: &'a mut Vec<WindowTvf>,
        error: Option<SqlError>,
    }

    fn func_name(e: &Expr) -> Option<String> {
        match e {
            Expr::Function(f) => Some(f.name.to_string().to_ascii_uppercase()),
            _ => None,
        }
    }

    fn func_args(e: &Expr) -> Vec<&Expr> {
        match e {
            Expr::Function(f) => match &f.args {
                FunctionArguments::List(l) => l
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    impl VisitorMut for Rewriter<'_> {
        type Break = ();

        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let Err(e) = self.rewrite_select(query) {
                self.error = Some(e);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }

    impl Rewriter<'_> {
        fn rewrite_select(&mut self, query: &mut Query) -> Result<(), SqlError> {
            let SetExpr::Select(select) = query.body.as_mut() else {
                return Ok(());
            };
            let GroupByExpr::Expressions(group, _) = &mut select.group_by else {
                return Ok(());
            };
            let Some(at) = group.iter().position(|e| {
                matches!(func_name(e).as_deref(), Some("TUMBLE" | "HOP" | "SESSION"))
            }) else {
                return Ok(());
            };
            let func = func_name(&group[at]).expect("found above");
            let args = func_args(&group[at]);
            let err = |m: String| self.src.error(self.pos, m);
            let time_column = match args.first() {
                Some(Expr::Identifier(i)) => i.value.clone(),
                Some(Expr::CompoundIdentifier(p)) => {
                    p.last().map(|i| i.value.clone()).unwrap_or_default()
                }
                _ => {
                    return Err(err(format!(
                        "{func}(...) in GROUP BY takes the time column first"
                    )));
                }
            };
            let ms: Vec<i64> = args[1..]
                .iter()
                .map(|a| {
                    interval_millis(a).ok_or_else(|| {
                        err(format!("{func}(...) takes INTERVAL arguments, found {a}"))
                    })
                })
                .collect::<Result<_, _>>()?;
            let kind = match (func.as_str(), ms.as_slice()) {
                ("TUMBLE", [size]) => WindowKind::Tumble {
                    size: *size,
                    offset: 0,
                },
                ("TUMBLE", [size, offset]) => WindowKind::Tumble {
                    size: *size,
                    offset: *offset,
                },
                ("HOP", [slide, size]) => WindowKind::Hop {
                    slide: *slide,
                    size: *size,
                    offset: 0,
                },
                ("SESSION", [gap]) => WindowKind::Session { gap: *gap },
                _ => {
                    return Err(err(format!(
                        "GROUP BY {func}(...) has the wrong number of arguments"
                    )));
                }
            };
            super::validate(self.src, &func, kind, self.pos)?;
            let [from] = select.from.as_mut_slice() else {
                return Err(err(format!(
                    "GROUP BY {func}(...) needs a single table in FROM"
                )));
            };
            if !from.joins.is_empty() {
                return Err(err(format!(
                    "GROUP BY {func}(...) over a join is not supported"
                )));
            }
            let TableFactor::Table { name, .. } = &mut from.relation else {
                return Err(err(format!(
                    "GROUP BY {func}(...) needs a table or view in FROM"
                )));
            };
            let input = name.to_string();
            let relation = format!("__window_{}", self.windows.len());
            *name = ObjectName::from(vec![Ident::new(relation.clone())]);
            // SESSION partitions by the other grouping keys.
            let partition_by = if matches!(kind, WindowKind::Session { .. }) {
                group
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != at)
                    .map(|(_, e)| match e {
                        Expr::Identifier(i) => Ok(i.value.clone()),
                        other => Err(err(format!(
                            "SESSION windows group by plain columns, found {other}"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                Vec::new()
            };
            let uses_rowtime = select.projection.iter().any(|p| {
                p.to_string()
                    .to_ascii_uppercase()
                    .contains(&format!("{func}_ROWTIME"))
            });
            group.remove(at);
            group.push(Expr::Identifier(Ident::new("window_start")));
            group.push(Expr::Identifier(Ident::new("window_end")));
            if uses_rowtime {
                group.push(Expr::Identifier(Ident::new("window_time")));
            }
            let mut aux = AuxiliaryFunctions { func: func.clone() };
            let _ = select.projection.visit(&mut aux);
            if let Some(h) = &mut select.having {
                let _ = h.visit(&mut aux);
            }
            self.windows.push(WindowTvf {
                relation,
                kind,
                input,
                time_column,
                partition_by,
                pos: self.pos,
            });
            Ok(())
        }
    }

    /// `TUMBLE_START(...)` → `window_start`, `_END` → `window_end`, `_ROWTIME` → `window_time`.
    struct AuxiliaryFunctions {
        func: String,
    }

    impl VisitorMut for AuxiliaryFunctions {
        type Break = ();

        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            let column = match func_name(e) {
                Some(n) if n == format!("{}_START", self.func) => "window_start",
                Some(n) if n == format!("{}_END", self.func) => "window_end",
                Some(n) if n == format!("{}_ROWTIME", self.func) => "window_time",
                _ => return ControlFlow::Continue(()),
            };
            *e = Expr::Identifier(Ident::new(column));
            ControlFlow::Continue(())
        }
    }
}
