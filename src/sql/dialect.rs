//! Flink's dialect on top of sqlparser, at the level of tokens: tokenizing a script, building a
//! parser over a slice of tokens, turning parser errors into positioned ones, and the small token
//! helpers every part of our grammar (DDL, window TVFs, MATCH_RECOGNIZE) shares.

use datafusion::sql::sqlparser::ast::{DateTimeField, Expr, Value};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer};

use super::error::{Position, SourceText, SqlError, split_parser_message};

/// sqlparser tokens without whitespace and comments; `>>` is split into two `>` because Flink SQL
/// has no shift operator but nests types as `ARRAY<ARRAY<INT>>`.
pub fn tokenize(text: &str) -> Result<Vec<TokenWithSpan>, ParserError> {
    let raw = Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let mut tokens = Vec::with_capacity(raw.len());
    for t in raw {
        match t.token {
            Token::Whitespace(_) => {}
            Token::ShiftRight => {
                let second = Location::new(t.span.start.line, t.span.start.column + 1);
                tokens.push(TokenWithSpan::new(
                    Token::Gt,
                    Span::new(t.span.start, t.span.start),
                ));
                tokens.push(TokenWithSpan::new(Token::Gt, Span::new(second, t.span.end)));
            }
            _ => tokens.push(t),
        }
    }
    Ok(tokens)
}

/// True when `token` is the unquoted word `word` (case-insensitively).
pub fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.value.eq_ignore_ascii_case(word) && w.quote_style.is_none())
}

pub fn sql_parser(tokens: &[TokenWithSpan]) -> Parser<'static> {
    static DIALECT: GenericDialect = GenericDialect {};
    Parser::new(&DIALECT).with_tokens_with_locations(tokens.to_vec())
}

/// Turns a sqlparser error into a positioned one; `fallback` when sqlparser gave no position.
pub fn parser_error(src: &SourceText, e: ParserError, fallback: Position) -> SqlError {
    let raw = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "statement is nested too deeply".to_string(),
    };
    let (message, pos) = split_parser_message(&raw);
    let message = message.replacen("Expected: ", "expected ", 1);
    src.error(pos.unwrap_or(fallback), message)
}

/// Index of the `)` matching the `(` at `open`.
pub fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// Consumes the word if it is next (case-insensitively).
pub fn consume_word(p: &mut Parser, word: &str) -> bool {
    match &p.peek_token().token {
        Token::Word(w) if w.value.eq_ignore_ascii_case(word) => {
            p.next_token();
            true
        }
        _ => false,
    }
}

/// Consumes the words if they are all next, else nothing.
pub fn consume_words(p: &mut Parser, words: &[&str]) -> bool {
    let start = p.index();
    for word in words {
        if !consume_word(p, word) {
            while p.index() > start {
                p.prev_token();
            }
            return false;
        }
    }
    true
}

/// The length of a constant `INTERVAL 'n' UNIT` in milliseconds.
pub fn interval_millis(expr: &Expr) -> Option<i64> {
    let Expr::Interval(i) = expr else { return None };
    let text = match i.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
            _ => return None,
        },
        _ => return None,
    };
    let mut parts = text.split_whitespace();
    let number: f64 = parts.next()?.parse().ok()?;
    let unit = match (parts.next(), &i.leading_field) {
        (Some(u), None) => u.to_ascii_lowercase(),
        (None, Some(f)) => unit_name(f)?.to_string(),
        (None, None) => "second".to_string(),
        _ => return None,
    };
    let ms = match unit.trim_end_matches('s') {
        "millisecond" => 1.0,
        "second" => 1_000.0,
        "minute" => 60_000.0,
        "hour" => 3_600_000.0,
        "day" => 86_400_000.0,
        _ => return None,
    };
    Some((number * ms).round() as i64)
}

fn unit_name(f: &DateTimeField) -> Option<&'static str> {
    Some(match f {
        DateTimeField::Millisecond | DateTimeField::Milliseconds => "millisecond",
        DateTimeField::Second | DateTimeField::Seconds => "second",
        DateTimeField::Minute | DateTimeField::Minutes => "minute",
        DateTimeField::Hour | DateTimeField::Hours => "hour",
        DateTimeField::Day | DateTimeField::Days => "day",
        _ => return None,
    })
}
