//! The Sluice dialect: a thin layer over sqlparser.
//!
//! The whole file is tokenized once by sqlparser (so every token knows its file line and column),
//! split into statements at top-level `;`, and each statement is parsed by sqlparser's `Parser`
//! driven from here: Flink-only syntax (CREATE TABLE with WATERMARK, `SET 'k' = 'v'`, statement
//! sets, job commands) is read token by token, everything else is sqlparser's own grammar.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::ast::{Located, ObjectKind, Script, ShowKind, Statement, TemporalRef};
use super::ddl::parse_create_table;
use super::dialect::{consume_word, consume_words, is_word, parser_error, sql_parser, tokenize};
use super::error::{Position, SourceText, SqlError};
use super::match_recognize::{self, MatchRecognizeSpec};
use super::substitute::substitute_variables;
use super::window::{WindowTvf, extract_window_tvfs, legacy};

/// Parses a script after `${VAR}` substitution from the process environment.
pub fn parse_script(name: &str, text: &str) -> Result<Script, SqlError> {
    parse_script_with(name, text, |var| std::env::var(var).ok())
}

/// Parses a script, taking `${VAR}` values from `lookup`.
pub fn parse_script_with(
    name: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Script, SqlError> {
    let original = SourceText::new(name, text);
    let substituted = substitute_variables(&original, lookup)?;
    let source = SourceText::new(name, substituted);
    let tokens =
        tokenize(&source.text).map_err(|e| parser_error(&source, e, Position::default()))?;
    let mut statements = Vec::new();
    let mut windows = Vec::new();
    let mut matches = Vec::new();
    let mut temporal = Vec::new();
    for chunk in split_statements(&tokens) {
        let (chunk, found) = extract_temporal(&source, chunk, statements.len())?;
        temporal.extend(found);
        let (chunk, found) = extract_window_tvfs(&source, &chunk, windows.len())?;
        windows.extend(found);
        let (chunk, match_keywords) = match_recognize::move_within_clauses(&source, &chunk)?;
        let mut stmt = parse_statement(&source, &chunk)?;
        rewrite_legacy_windows(&source, &mut stmt, &mut windows)?;
        let first_match = matches.len();
        extract_match_recognize(&source, &mut stmt, &match_keywords, &mut matches)?;
        for m in &mut matches[first_match..] {
            m.statement = statements.len();
        }
        statements.push(stmt);
    }
    Ok(Script {
        source,
        statements,
        windows,
        matches,
        temporal,
    })
}

/// Splits at top-level semicolons, keeping `EXECUTE STATEMENT SET BEGIN ... END` (and the older
/// `BEGIN STATEMENT SET; ... END;`) together as one statement.
fn split_statements(tokens: &[TokenWithSpan]) -> Vec<&[TokenWithSpan]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_set = false;
    for (i, t) in tokens.iter().enumerate() {
        if i == start && starts_statement_set(&tokens[i..]) {
            in_set = true;
        }
        if t.token == Token::SemiColon {
            let ends_set = i > start && is_word(&tokens[i - 1].token, "END");
            if !in_set || ends_set {
                if i > start {
                    out.push(&tokens[start..i]);
                }
                start = i + 1;
                in_set = false;
            }
        }
    }
    if start < tokens.len() && !matches!(tokens[start].token, Token::EOF) {
        let end = tokens
            .iter()
            .rposition(|t| t.token != Token::EOF)
            .map_or(start, |e| e + 1);
        if end > start {
            out.push(&tokens[start..end]);
        }
    }
    out
}

/// Typed text split into statements, for the shell: each complete statement's byte offset and
/// its text through its `;`, or `None` while the text is not finished — a statement (or a statement set) without its
/// `;` yet, or an open string or comment. Text that cannot be tokenized otherwise is complete:
/// running it reports the error.
pub fn complete_statements(text: &str) -> Option<Vec<(usize, String)>> {
    let tokens = match tokenize(text) {
        Ok(t) => t,
        Err(e) if e.to_string().contains("Unterminated") => return None,
        Err(_) => return Some(vec![(0, text.to_string())]),
    };
    let last = tokens.iter().rposition(|t| t.token != Token::EOF)?;
    if tokens[last].token != Token::SemiColon {
        return None;
    }
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    // A token's location (1-based line and column, in characters) as a byte offset.
    let offset = |l: datafusion::sql::sqlparser::tokenizer::Location| {
        let start = line_starts[(l.line as usize)
            .saturating_sub(1)
            .min(line_starts.len() - 1)];
        text[start..]
            .char_indices()
            .nth((l.column as usize).saturating_sub(1))
            .map_or(text.len(), |(i, _)| start + i)
    };
    let chunks = split_statements(&tokens[..=last]);
    // The last chunk must have ended at a `;` that closes it (not inside an open statement set).
    let closed = chunks.last().is_none_or(|c| {
        let end = c.last().expect("chunks are not empty");
        tokens[..=last]
            .iter()
            .skip_while(|t| !std::ptr::eq(*t, end))
            .nth(1)
            .is_some_and(|t| t.token == Token::SemiColon)
    });
    if !closed {
        return None;
    }
    Some(
        chunks
            .iter()
            .map(|c| {
                let from = offset(c[0].span.start);
                let to = offset(c[c.len() - 1].span.end);
                (from, format!("{};", &text[from..to]))
            })
            .collect(),
    )
}

fn starts_statement_set(tokens: &[TokenWithSpan]) -> bool {
    let words: Vec<&Token> = tokens.iter().take(4).map(|t| &t.token).collect();
    let w = |i: usize, s: &str| words.get(i).is_some_and(|t| is_word(t, s));
    (w(0, "EXECUTE") && w(1, "STATEMENT") && w(2, "SET")) || (w(0, "BEGIN") && w(1, "STATEMENT"))
}

/// Applies [`legacy::rewrite`] to every query a statement holds.
fn rewrite_legacy_windows(
    src: &SourceText,
    stmt: &mut Located<Statement>,
    windows: &mut Vec<WindowTvf>,
) -> Result<(), SqlError> {
    let pos = stmt.pos;
    match &mut stmt.node {
        Statement::Insert(s) | Statement::Query(s) => legacy::rewrite(src, s, pos, windows),
        Statement::StatementSet(inserts) => {
            for i in inserts {
                legacy::rewrite(src, &mut i.node, i.pos, windows)?;
            }
            Ok(())
        }
        Statement::CreateView { query, .. } => legacy::rewrite(src, query.as_mut(), pos, windows),
        _ => Ok(()),
    }
}

/// Applies [`match_recognize::extract`] to every query a statement holds.
fn extract_match_recognize(
    src: &SourceText,
    stmt: &mut Located<Statement>,
    keywords: &[Position],
    matches: &mut Vec<MatchRecognizeSpec>,
) -> Result<(), SqlError> {
    let pos = stmt.pos;
    match &mut stmt.node {
        Statement::Insert(s) | Statement::Query(s) => {
            match_recognize::extract(src, s, pos, keywords, matches)
        }
        Statement::StatementSet(inserts) => {
            for i in inserts {
                match_recognize::extract(src, &mut i.node, i.pos, &[], matches)?;
            }
            Ok(())
        }
        Statement::CreateView { query, .. } => {
            match_recognize::extract(src, query.as_mut(), pos, keywords, matches)
        }
        _ => Ok(()),
    }
}

/// Takes `FOR SYSTEM_TIME AS OF <time>` out of a statement, noting which table it follows,
/// the name the query gives it and the time expression (a column, `o.ts`).
fn extract_temporal(
    src: &SourceText,
    tokens: &[TokenWithSpan],
    statement: usize,
) -> Result<(Vec<TokenWithSpan>, Vec<TemporalRef>), SqlError> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let word = |k: usize, w: &str| tokens.get(i + k).is_some_and(|t| is_word(&t.token, w));
        if !(word(0, "FOR") && word(1, "SYSTEM_TIME") && word(2, "AS") && word(3, "OF")) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let pos: Position = tokens[i].span.start.into();
        // The table: the words (and dots) just before, skipping whitespace.
        let table: String = {
            let mut parts = Vec::new();
            for t in out
                .iter()
                .rev()
                .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            {
                match &t.token {
                    Token::Word(w)
                        if parts.is_empty() || parts.last() == Some(&".".to_string()) =>
                    {
                        parts.push(w.value.clone())
                    }
                    Token::Period if !parts.is_empty() => parts.push(".".into()),
                    _ => break,
                }
            }
            parts.reverse();
            parts.concat()
        };
        if table.is_empty() {
            return Err(src.error(
                pos,
                "`FOR SYSTEM_TIME AS OF` follows the table joined as of a time",
            ));
        }
        // The time: a column, maybe qualified.
        i += 4;
        let mut time = String::new();
        while let Some(t) = tokens.get(i) {
            match &t.token {
                Token::Whitespace(_) if time.is_empty() => {}
                Token::Word(w) if time.is_empty() || time.ends_with('.') => time.push_str(&w.value),
                Token::Period if !time.is_empty() && !time.ends_with('.') => time.push('.'),
                _ => break,
            }
            i += 1;
        }
        if time.is_empty() || time.ends_with('.') {
            return Err(src.error(pos, "`FOR SYSTEM_TIME AS OF` takes a time column (o.ts)"));
        }
        // The alias after the clause, if any: `AS r` or a bare name before ON.
        let mut j = i;
        let skip_space = |mut j: usize| {
            while tokens
                .get(j)
                .is_some_and(|t| matches!(t.token, Token::Whitespace(_)))
            {
                j += 1;
            }
            j
        };
        j = skip_space(j);
        if tokens.get(j).is_some_and(|t| is_word(&t.token, "AS")) {
            j = skip_space(j + 1);
        }
        let relation = match tokens.get(j).map(|t| &t.token) {
            Some(Token::Word(w))
                if !["ON", "WHERE", "JOIN", "LEFT", "INNER", "GROUP", "USING"]
                    .iter()
                    .any(|k| w.value.eq_ignore_ascii_case(k)) =>
            {
                w.value.clone()
            }
            _ => table.rsplit('.').next().unwrap_or(&table).to_string(),
        };
        found.push(TemporalRef {
            statement,
            table,
            relation,
            time,
            pos,
        });
    }
    Ok((out, found))
}

fn parse_statement(
    src: &SourceText,
    tokens: &[TokenWithSpan],
) -> Result<Located<Statement>, SqlError> {
    let pos: Position = tokens[0].span.start.into();
    let mut p = sql_parser(tokens);
    let node = parse_statement_body(&mut p).map_err(|e| parser_error(src, e, pos))?;
    let next = p.peek_token();
    if next.token != Token::EOF {
        return Err(src.error(
            next.span.start.into(),
            format!(
                "unexpected `{}`: expected `;` at the end of the statement",
                next.token
            ),
        ));
    }
    Ok(Located { node, pos })
}

fn parse_statement_body(p: &mut Parser) -> Result<Statement, ParserError> {
    let first = p.peek_token();
    let Token::Word(word) = &first.token else {
        if first.token == Token::LParen {
            return Ok(Statement::Query(Box::new(p.parse_statement()?)));
        }
        return p.expected("a statement", first);
    };
    match word.value.to_ascii_uppercase().as_str() {
        "SET" => {
            p.next_token();
            parse_set(p)
        }
        "RESET" => {
            p.next_token();
            let key = match p.peek_token().token {
                Token::EOF => None,
                _ => Some(parse_setting_key(p)?),
            };
            Ok(Statement::Reset { key })
        }
        "CREATE" => parse_create(p),
        "DROP" => {
            p.next_token();
            consume_word(p, "TEMPORARY");
            let kind = if p.parse_keyword(Keyword::TABLE) {
                ObjectKind::Table
            } else if p.parse_keyword(Keyword::VIEW) {
                ObjectKind::View
            } else {
                return p.expected("TABLE or VIEW", p.peek_token());
            };
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = p.parse_object_name(false)?.to_string();
            Ok(Statement::Drop {
                kind,
                name,
                if_exists,
            })
        }
        "INSERT" => Ok(Statement::Insert(Box::new(p.parse_statement()?))),
        "SELECT" | "WITH" | "VALUES" => Ok(Statement::Query(Box::new(p.parse_statement()?))),
        "EXECUTE" | "BEGIN" => parse_statement_set(p),
        "SHOW" => {
            p.next_token();
            let kind = match p.next_token().token {
                Token::Word(w) => match w.value.to_ascii_uppercase().as_str() {
                    "TABLES" => ShowKind::Tables,
                    "VIEWS" => ShowKind::Views,
                    "JOBS" => ShowKind::Jobs,
                    "FUNCTIONS" => ShowKind::Functions,
                    _ => {
                        p.prev_token();
                        return p.expected("TABLES, VIEWS, JOBS or FUNCTIONS", p.peek_token());
                    }
                },
                _ => {
                    p.prev_token();
                    return p.expected("TABLES, VIEWS, JOBS or FUNCTIONS", p.peek_token());
                }
            };
            Ok(Statement::Show(kind))
        }
        "DESCRIBE" | "DESC" => {
            p.next_token();
            Ok(Statement::Describe(p.parse_object_name(false)?.to_string()))
        }
        "EXPLAIN" => {
            p.next_token();
            let inner_pos: Position = p.peek_token().span.start.into();
            let inner = parse_statement_body(p)?;
            Ok(Statement::Explain(Box::new(Located {
                node: inner,
                pos: inner_pos,
            })))
        }
        "STOP" => {
            p.next_token();
            if !consume_word(p, "JOB") {
                return p.expected("JOB", p.peek_token());
            }
            let id = p.parse_literal_string()?;
            let with_savepoint = consume_words(p, &["WITH", "SAVEPOINT"]);
            let with_drain = consume_words(p, &["WITH", "DRAIN"]);
            Ok(Statement::StopJob {
                id,
                with_savepoint,
                with_drain,
            })
        }
        _ => p.expected(
            "a statement (SET, RESET, CREATE TABLE, CREATE VIEW, DROP, INSERT INTO, SELECT, \
             EXECUTE STATEMENT SET, SHOW, DESCRIBE, EXPLAIN, STOP JOB)",
            first,
        ),
    }
}

/// `SET 'key' = 'value'`, also unquoted `SET key = value`; `SET` alone lists settings.
fn parse_set(p: &mut Parser) -> Result<Statement, ParserError> {
    if p.peek_token().token == Token::EOF {
        return Ok(Statement::Show(ShowKind::Settings));
    }
    let key = parse_setting_key(p)?;
    p.expect_token(&Token::Eq)?;
    let tok = p.next_token();
    let value = match tok.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
        Token::Number(n, _) => n,
        Token::Word(w) => w.value,
        _ => return p.expected("a quoted value", tok),
    };
    Ok(Statement::Set { key, value })
}

fn parse_setting_key(p: &mut Parser) -> Result<String, ParserError> {
    let tok = p.next_token();
    match tok.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
        Token::Word(w) => {
            let mut key = w.value;
            while p.consume_token(&Token::Period) {
                key.push('.');
                match p.next_token().token {
                    Token::Word(w) => key.push_str(&w.value),
                    other => key.push_str(&other.to_string()),
                }
            }
            Ok(key)
        }
        _ => p.expected("a setting key such as 'table.exec.late-rows'", tok),
    }
}

fn parse_create(p: &mut Parser) -> Result<Statement, ParserError> {
    let start = p.index();
    p.next_token(); // CREATE
    let _temporary = consume_word(p, "TEMPORARY");
    if p.parse_keyword(Keyword::TABLE) {
        return parse_create_table(p).map(|t| Statement::CreateTable(Box::new(t)));
    }
    if p.parse_keyword(Keyword::VIEW) {
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = p.parse_object_name(false)?.to_string();
        p.expect_keyword(Keyword::AS)?;
        let query = p.parse_query()?;
        return Ok(Statement::CreateView {
            name,
            query,
            if_not_exists,
        });
    }
    while p.index() > start + 1 {
        p.prev_token();
    }
    p.expected("TABLE or VIEW after CREATE", p.peek_token())
}

fn parse_statement_set(p: &mut Parser) -> Result<Statement, ParserError> {
    let ok = consume_words(p, &["EXECUTE", "STATEMENT", "SET", "BEGIN"])
        || (consume_words(p, &["BEGIN", "STATEMENT", "SET"]) && p.consume_token(&Token::SemiColon));
    if !ok {
        return p.expected("EXECUTE STATEMENT SET BEGIN", p.peek_token());
    }
    let mut inserts = Vec::new();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        if consume_word(p, "END") {
            break;
        }
        let next = p.peek_token();
        if next.token == Token::EOF {
            return p.expected("END to close the statement set", next);
        }
        if !is_word(&next.token, "INSERT") {
            return p.expected("INSERT INTO inside a statement set", next);
        }
        let pos: Position = next.span.start.into();
        let stmt = p.parse_statement()?;
        inserts.push(Located {
            node: Box::new(stmt),
            pos,
        });
        if !p.consume_token(&Token::SemiColon) {
            return p.expected("`;` after INSERT in the statement set", p.peek_token());
        }
    }
    Ok(Statement::StatementSet(inserts))
}

#[cfg(test)]
mod tests {
    fn split(text: &str) -> Option<Vec<String>> {
        super::complete_statements(text).map(|s| s.into_iter().map(|(_, t)| t).collect())
    }

    #[test]
    fn typed_text_is_complete_at_a_top_level_semicolon() {
        assert_eq!(split("SHOW TABLES"), None);
        assert_eq!(split("SELECT ';' FROM t"), None);
        assert_eq!(split("SELECT 'a;"), None);
        assert_eq!(split("SELECT 1 /* ; */"), None);
        assert_eq!(split("SELECT 1 -- ;\n"), None);
        assert_eq!(
            split("SHOW TABLES;"),
            Some(vec!["SHOW TABLES;".to_string()])
        );
        assert_eq!(
            split("CREATE TABLE t (\n  x INT\n) WITH ('a' = ';');  SHOW TABLES; -- done"),
            Some(vec![
                "CREATE TABLE t (\n  x INT\n) WITH ('a' = ';');".to_string(),
                "SHOW TABLES;".to_string()
            ])
        );
        let set = "EXECUTE STATEMENT SET BEGIN\nINSERT INTO a SELECT * FROM t;";
        assert_eq!(split(set), None);
        let ended = format!("{set}\nEND;");
        assert_eq!(split(&ended), Some(vec![ended.clone()]));
    }
}
