//! MATCH_RECOGNIZE in the dialect layer.
//!
//! sqlparser parses MATCH_RECOGNIZE except Flink's `WITHIN INTERVAL ...`, and DataFusion cannot
//! plan it. So, like window TVFs: before parsing, `WITHIN <interval>` is moved from after the
//! PATTERN into the DEFINE list as a pseudo-variable `__within` (sqlparser then keeps it in the
//! AST); after parsing, each `... MATCH_RECOGNIZE (...)` table factor is taken out of the
//! statement into a [`MatchRecognizeSpec`] and a synthetic relation (`__match_0`) put in its
//! place. The planner registers that relation with the match's output columns and compiles a
//! scan of it into the pattern operator over the input's stream.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AfterMatchSkip, Expr, Ident, MatchRecognizePattern, MatchRecognizeSymbol, Measure, ObjectName,
    OrderByExpr, Query, RepetitionQuantifier, RowsPerMatch, Spanned, TableFactor, VisitMut,
    VisitorMut,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};

use super::dialect::{interval_millis, is_word};
use super::error::{Position, SourceText, SqlError};
use crate::operators::match_recognize::matcher::Skip;
use crate::operators::match_recognize::nfa::{Pattern, VarId};

/// The pseudo-variable carrying `WITHIN` through sqlparser's DEFINE list.
const WITHIN_SYMBOL: &str = "__within";

/// Where the rows come from.
#[derive(Debug, Clone)]
pub enum MatchInput {
    Table(String),
    Query(Box<Query>),
}

/// One MATCH_RECOGNIZE clause, taken out of its statement.
#[derive(Debug, Clone)]
pub struct MatchRecognizeSpec {
    /// The synthetic relation name standing in the statement.
    pub relation: String,
    pub input: MatchInput,
    pub partition_by: Vec<Expr>,
    pub order_by: Vec<OrderByExpr>,
    pub measures: Vec<Measure>,
    /// ALL ROWS PER MATCH (one output row per matched row) instead of ONE ROW PER MATCH.
    pub all_rows: bool,
    pub skip: Skip,
    pub pattern: Pattern,
    /// The PATTERN as written (normalized), for `sluice explain`.
    pub pattern_text: String,
    /// Pattern variables in order of first appearance; a [`VarId`] indexes this.
    pub variables: Vec<String>,
    /// DEFINE conditions; variables without one match every row.
    pub defines: Vec<(VarId, Expr)>,
    /// WITHIN, in milliseconds.
    pub within: Option<i64>,
    pub pos: Position,
    /// Index of the statement holding it: its relation is registered when that statement is
    /// planned.
    pub statement: usize,
}

/// Moves each MATCH_RECOGNIZE's `WITHIN <interval>` into its DEFINE list as `__within AS
/// <interval>,`; returns the new tokens and the position of every MATCH_RECOGNIZE keyword.
pub fn move_within_clauses(
    src: &SourceText,
    tokens: &[TokenWithSpan],
) -> Result<(Vec<TokenWithSpan>, Vec<Position>), SqlError> {
    let mut out = tokens.to_vec();
    let mut positions = Vec::new();
    let mut i = 0;
    while i < out.len() {
        if !(is_word(&out[i].token, "MATCH_RECOGNIZE")
            && out.get(i + 1).is_some_and(|t| t.token == Token::LParen))
        {
            i += 1;
            continue;
        }
        positions.push(out[i].span.start.into());
        // Top-level WITHIN and DEFINE inside the parentheses.
        let (mut within, mut define, mut depth) = (None, None, 0usize);
        let mut j = i + 1;
        while j < out.len() {
            match &out[j].token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                t if depth == 1 && is_word(t, "WITHIN") => within = Some(j),
                t if depth == 1 && is_word(t, "DEFINE") => define = Some(j),
                _ => {}
            }
            j += 1;
        }
        if let Some(w) = within {
            let Some(d) = define.filter(|&d| d > w) else {
                return Err(src.error(
                    out[w].span.start.into(),
                    "WITHIN goes between PATTERN (...) and DEFINE",
                ));
            };
            let interval: Vec<TokenWithSpan> = out[w + 1..d].to_vec();
            if interval.is_empty() {
                return Err(src.error(
                    out[w].span.start.into(),
                    "WITHIN needs an interval, e.g. WITHIN INTERVAL '10' MINUTE",
                ));
            }
            let span = out[w].span;
            let mut moved = vec![TokenWithSpan::new(
                Token::Word(Word {
                    value: WITHIN_SYMBOL.to_string(),
                    quote_style: None,
                    keyword: Keyword::NoKeyword,
                }),
                span,
            )];
            moved.push(TokenWithSpan::new(
                Token::Word(Word {
                    value: "AS".to_string(),
                    quote_style: None,
                    keyword: Keyword::AS,
                }),
                span,
            ));
            moved.extend(interval);
            moved.push(TokenWithSpan::new(Token::Comma, span));
            // Insert after DEFINE, then drop `WITHIN ...` (which lies before it).
            out.splice(d + 1..d + 1, moved);
            out.drain(w..d);
        }
        i += 2;
    }
    Ok((out, positions))
}

/// Replaces every MATCH_RECOGNIZE table factor in `node` by a synthetic relation, appending the
/// specs to `matches`. `keyword_positions` are the MATCH_RECOGNIZE keywords of the statement.
pub fn extract<T: VisitMut>(
    src: &SourceText,
    node: &mut T,
    pos: Position,
    keyword_positions: &[Position],
    matches: &mut Vec<MatchRecognizeSpec>,
) -> Result<(), SqlError> {
    let single = match keyword_positions {
        [p] => Some(*p),
        _ => None,
    };
    let mut v = Extractor {
        src,
        pos: single.unwrap_or(pos),
        next: matches.len(),
        matches,
        error: None,
    };
    let _ = node.visit(&mut v);
    match v.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct Extractor<'a> {
    src: &'a SourceText,
    pos: Position,
    /// Number of the next synthetic relation.
    next: usize,
    matches: &'a mut Vec<MatchRecognizeSpec>,
    error: Option<SqlError>,
}

impl VisitorMut for Extractor<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if !matches!(factor, TableFactor::MatchRecognize { .. }) {
            return ControlFlow::Continue(());
        }
        let relation = format!("__match_{}", self.next);
        self.next += 1;
        let replacement = TableFactor::Table {
            name: ObjectName::from(vec![Ident::new(relation.clone())]),
            alias: None,
            args: None,
            with_hints: Vec::new(),
            version: None,
            with_ordinality: false,
            partitions: Vec::new(),
            json_path: None,
            sample: None,
            index_hints: Vec::new(),
        };
        let TableFactor::MatchRecognize {
            table,
            partition_by,
            order_by,
            measures,
            rows_per_match,
            after_match_skip,
            pattern,
            symbols,
            alias,
        } = std::mem::replace(factor, replacement)
        else {
            unreachable!("checked above")
        };
        if let TableFactor::Table { alias: a, .. } = factor {
            *a = alias;
        }
        let result = (|| {
            let input = match *table {
                TableFactor::Table { name, .. } => MatchInput::Table(name.to_string()),
                TableFactor::Derived { mut subquery, .. } => {
                    // A MATCH_RECOGNIZE inside the input gets the next numbers.
                    let _ = subquery.as_mut().visit(&mut *self);
                    if let Some(e) = self.error.take() {
                        return Err(e);
                    }
                    MatchInput::Query(subquery)
                }
                other => {
                    return Err(self.src.error(
                        self.pos,
                        format!("MATCH_RECOGNIZE reads a table, a view or a subquery, not {other}"),
                    ));
                }
            };
            self.spec(
                relation,
                input,
                partition_by,
                order_by,
                measures,
                rows_per_match,
                after_match_skip,
                pattern,
                symbols,
            )
        })();
        match result {
            Ok(spec) => {
                self.matches.push(spec);
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

impl Extractor<'_> {
    #[allow(clippy::too_many_arguments)]
    fn spec(
        &self,
        relation: String,
        input: MatchInput,
        partition_by: Vec<Expr>,
        order_by: Vec<OrderByExpr>,
        measures: Vec<Measure>,
        rows_per_match: Option<RowsPerMatch>,
        after_match_skip: Option<datafusion::sql::sqlparser::ast::AfterMatchSkip>,
        pattern: MatchRecognizePattern,
        symbols: Vec<datafusion::sql::sqlparser::ast::SymbolDefinition>,
    ) -> Result<MatchRecognizeSpec, SqlError> {
        let mut variables = Vec::new();
        let pattern_text = pattern.to_string();
        let pattern = self.pattern(&pattern, &mut variables)?;
        let var_id = |name: &Ident, variables: &[String]| {
            variables
                .iter()
                .position(|v| *v == name.value)
                .map(|i| i as VarId)
        };
        let mut within = None;
        let mut defines = Vec::new();
        for s in symbols {
            if s.symbol.value == WITHIN_SYMBOL {
                let ms = interval_millis(&s.definition)
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| {
                        self.src.error(
                            self.expr_pos(&s.definition),
                            format!("WITHIN takes a positive INTERVAL, found {}", s.definition),
                        )
                    })?;
                within = Some(ms);
                continue;
            }
            let Some(v) = var_id(&s.symbol, &variables) else {
                return Err(self.src.error(
                    s.symbol.span.start.into(),
                    format!(
                        "DEFINE {}: no such variable in PATTERN (variables: {})",
                        s.symbol.value,
                        variables.join(", ")
                    ),
                ));
            };
            if defines.iter().any(|(d, _)| *d == v) {
                return Err(self.src.error(
                    s.symbol.span.start.into(),
                    format!("{} is defined twice", s.symbol.value),
                ));
            }
            defines.push((v, s.definition));
        }
        let skip = match &after_match_skip {
            None | Some(AfterMatchSkip::PastLastRow) => Skip::PastLastRow,
            Some(AfterMatchSkip::ToNextRow) => Skip::ToNextRow,
            Some(AfterMatchSkip::ToFirst(v)) | Some(AfterMatchSkip::ToLast(v)) => {
                let first = matches!(after_match_skip, Some(AfterMatchSkip::ToFirst(_)));
                let Some(id) = var_id(v, &variables) else {
                    return Err(self.src.error(
                        v.span.start.into(),
                        format!(
                            "AFTER MATCH SKIP TO {}: no such variable in PATTERN",
                            v.value
                        ),
                    ));
                };
                if first {
                    Skip::ToFirst(id)
                } else {
                    Skip::ToLast(id)
                }
            }
        };
        let all_rows = match rows_per_match {
            None | Some(RowsPerMatch::OneRow) => false,
            Some(RowsPerMatch::AllRows(None)) => true,
            Some(RowsPerMatch::AllRows(Some(mode))) => {
                return Err(self.src.error(
                    self.pos,
                    format!("ALL ROWS PER MATCH {mode} is not supported (matches are never empty, unmatched rows are not output)"),
                ));
            }
        };
        if order_by.is_empty() {
            return Err(self.src.error(
                self.pos,
                "MATCH_RECOGNIZE needs ORDER BY a time attribute (the event-time column)",
            ));
        }
        Ok(MatchRecognizeSpec {
            relation,
            input,
            partition_by,
            order_by,
            measures,
            all_rows,
            skip,
            pattern,
            pattern_text,
            variables,
            defines,
            within,
            pos: self.pos,
            statement: 0,
        })
    }

    fn expr_pos(&self, e: &Expr) -> Position {
        let start = e.span().start;
        if start.line > 0 {
            start.into()
        } else {
            self.pos
        }
    }

    fn pattern(
        &self,
        p: &MatchRecognizePattern,
        variables: &mut Vec<String>,
    ) -> Result<Pattern, SqlError> {
        use MatchRecognizePattern as P;
        Ok(match p {
            P::Symbol(MatchRecognizeSymbol::Named(name)) => {
                let id = match variables.iter().position(|v| *v == name.value) {
                    Some(i) => i,
                    None => {
                        variables.push(name.value.clone());
                        variables.len() - 1
                    }
                };
                Pattern::Var(id as VarId)
            }
            P::Symbol(s) => {
                return Err(self.src.error(
                    self.pos,
                    format!("the pattern anchor `{s}` is not supported"),
                ));
            }
            P::Exclude(_) => {
                return Err(self
                    .src
                    .error(self.pos, "pattern exclusion {- ... -} is not supported"));
            }
            P::Permute(_) => {
                return Err(self.src.error(self.pos, "PERMUTE is not supported"));
            }
            P::Concat(parts) => Pattern::Concat(
                parts
                    .iter()
                    .map(|p| self.pattern(p, variables))
                    .collect::<Result<_, _>>()?,
            ),
            P::Group(inner) => self.pattern(inner, variables)?,
            P::Alternation(alts) => Pattern::Alternation(
                alts.iter()
                    .map(|p| self.pattern(p, variables))
                    .collect::<Result<_, _>>()?,
            ),
            // sqlparser reads the reluctant `B+?` as `(B+)?`: a `?` straight after a quantifier.
            P::Repetition(inner, RepetitionQuantifier::AtMostOne)
                if matches!(inner.as_ref(), P::Repetition(..)) =>
            {
                let P::Repetition(base, q) = inner.as_ref() else {
                    unreachable!("matched above")
                };
                self.repeat(base, q, false, variables)?
            }
            P::Repetition(inner, q) => self.repeat(inner, q, true, variables)?,
        })
    }

    fn repeat(
        &self,
        inner: &MatchRecognizePattern,
        q: &RepetitionQuantifier,
        greedy: bool,
        variables: &mut Vec<String>,
    ) -> Result<Pattern, SqlError> {
        use RepetitionQuantifier as Q;
        let (min, max) = match *q {
            Q::ZeroOrMore => (0, None),
            Q::OneOrMore => (1, None),
            Q::AtMostOne => (0, Some(1)),
            Q::Exactly(n) => (n, Some(n)),
            Q::AtLeast(n) => (n, None),
            Q::AtMost(m) => (0, Some(m)),
            Q::Range(n, m) => (n, Some(m)),
        };
        if max.is_some_and(|m| m < min) || max == Some(0) {
            return Err(self.src.error(
                self.pos,
                format!("the quantifier {q} matches nothing; its upper bound must be at least 1 and not below the lower"),
            ));
        }
        Ok(Pattern::Repeat {
            inner: Box::new(self.pattern(inner, variables)?),
            min,
            max,
            greedy,
        })
    }
}

/// Parses `tokens` as one SQL expression (used for tests of WITHIN).
#[cfg(test)]
fn parse_expr(tokens: &[TokenWithSpan]) -> Expr {
    super::dialect::sql_parser(tokens).parse_expr().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parser::parse_script_with;

    fn parse(sql: &str) -> Result<Vec<MatchRecognizeSpec>, SqlError> {
        parse_script_with("t.sql", sql, |_| None).map(|s| s.matches)
    }

    const Q: &str = "SELECT * FROM t MATCH_RECOGNIZE (
        PARTITION BY k ORDER BY ts
        MEASURES A.ts AS a_ts, LAST(B.x) AS last_x
        ONE ROW PER MATCH
        AFTER MATCH SKIP TO LAST B
        PATTERN (A B+? (C | D){2,3} E*) WITHIN INTERVAL '10' SECOND
        DEFINE A AS A.x > 1, B AS B.x < PREV(B.x)
    ) AS m";

    #[test]
    fn reads_a_full_clause() {
        let script = parse_script_with("t.sql", Q, |_| None).unwrap();
        let [m] = script.matches.as_slice() else {
            panic!("one match")
        };
        assert_eq!(m.relation, "__match_0");
        assert_eq!(m.variables, vec!["A", "B", "C", "D", "E"]);
        assert_eq!(m.within, Some(10_000));
        assert_eq!(m.skip, Skip::ToLast(1));
        assert!(!m.all_rows);
        assert_eq!(m.defines.len(), 2);
        assert_eq!(m.measures.len(), 2);
        let Pattern::Concat(parts) = &m.pattern else {
            panic!("concat")
        };
        assert_eq!(
            parts[1],
            Pattern::Repeat {
                inner: Box::new(Pattern::Var(1)),
                min: 1,
                max: None,
                greedy: false
            }
        );
        assert!(
            matches!(&parts[2], Pattern::Repeat { min: 2, max: Some(3), greedy: true, inner } if matches!(inner.as_ref(), Pattern::Alternation(_)))
        );
        assert!(
            matches!(&script.statements[0].node, crate::sql::ast::Statement::Query(q) if q.to_string().contains("FROM __match_0 AS m"))
        );
    }

    #[test]
    fn mistakes_are_positioned_and_named() {
        let e = parse(&Q.replace("DEFINE A AS", "DEFINE Z AS")).unwrap_err();
        assert!(e.message.contains("DEFINE Z: no such variable"), "{e}");
        assert_eq!(e.pos.line, 7);
        let e = parse(&Q.replace("E*)", "E*, F)")).unwrap_err();
        assert!(e.message.contains("expected"), "{e}");
        let e = parse(&Q.replace("WITHIN INTERVAL '10' SECOND", "WITHIN 'soon'")).unwrap_err();
        assert!(
            e.message.contains("WITHIN takes a positive INTERVAL"),
            "{e}"
        );
        let e = parse(&Q.replace("ORDER BY ts", "")).unwrap_err();
        assert!(e.message.contains("ORDER BY"), "{e}");
        assert_eq!((e.pos.line, e.pos.column), (1, 17));
        let e = parse(&Q.replace("A B+?", "PERMUTE(A, B)")).unwrap_err();
        assert!(e.message.contains("PERMUTE"), "{e}");
    }

    #[test]
    fn within_moves_into_define() {
        let src = SourceText::new("t.sql", Q);
        let tokens = crate::sql::dialect::tokenize(Q).unwrap();
        let (moved, positions) = move_within_clauses(&src, &tokens).unwrap();
        assert_eq!(positions.len(), 1);
        let text: Vec<String> = moved.iter().map(|t| t.token.to_string()).collect();
        let text = text.join(" ");
        assert!(
            text.contains("DEFINE __within AS INTERVAL '10' SECOND , A AS"),
            "{text}"
        );
        assert!(!text.contains("WITHIN"));
        let i = moved
            .iter()
            .position(|t| is_word(&t.token, "__within"))
            .unwrap();
        let e = parse_expr(&moved[i + 2..i + 5]);
        assert_eq!(interval_millis(&e), Some(10_000));
    }
}
