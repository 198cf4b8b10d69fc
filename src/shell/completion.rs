//! Tab completion that knows the session and where the cursor is: inside `SET '…'` the keys and
//! then the key's values; inside `WITH ('…'` the connector's option names and then an option's
//! choices; elsewhere keywords, tables and views, functions, and the columns of the tables the
//! statement names (`alias.` completes that table's columns).

use std::sync::{Arc, Mutex};

use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use reedline::{Completer, CompletionResult, Span, Suggestion};

use crate::connectors::connector_options;
use crate::sql::planner::{Settings, Vocabulary};

pub struct SessionCompleter {
    /// The session's catalog, refreshed after every statement.
    pub vocabulary: Arc<Mutex<Vocabulary>>,
}

impl Completer for SessionCompleter {
    fn complete(&mut self, line: &str, pos: usize) -> CompletionResult {
        let vocabulary = self
            .vocabulary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        CompletionResult::fresh(suggestions(line, pos, &vocabulary))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Punct(char),
}

/// The tokens of the statement the cursor is in, up to `text`'s end, and where the string the
/// cursor is inside (if any) starts.
fn scan(text: &str) -> (Vec<Token>, Option<usize>) {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\'')) if chars.peek().is_some_and(|(_, c)| *c == '\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        Some((_, '\'')) => break,
                        Some((_, c)) => value.push(c),
                        None => return (tokens, Some(i + 1)),
                    }
                }
                tokens.push(Token::Str(value));
            }
            '-' if chars.peek().is_some_and(|(_, c)| *c == '-') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            ';' => tokens.clear(),
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = c.to_string();
                while let Some((_, c)) = chars.next_if(|(_, c)| c.is_alphanumeric() || *c == '_') {
                    word.push(c);
                }
                tokens.push(Token::Word(word));
            }
            c if c.is_whitespace() => {}
            c => tokens.push(Token::Punct(c)),
        }
    }
    (tokens, None)
}

/// What the cursor is in.
#[derive(Debug, PartialEq)]
enum Place {
    SetKey,
    SetValue(String),
    OptionKey {
        connector: Option<String>,
    },
    OptionValue {
        connector: Option<String>,
        key: String,
    },
    /// A string that is none of these: nothing to offer.
    OtherString,
    Sql,
}

fn is_word(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

fn place(tokens: &[Token], in_string: bool) -> Place {
    if !in_string {
        return Place::Sql;
    }
    if is_word(tokens.first(), "SET") {
        return match &tokens[1..] {
            [] => Place::SetKey,
            [Token::Str(key), Token::Punct('=')] => Place::SetValue(key.clone()),
            _ => Place::OtherString,
        };
    }
    let with = (0..tokens.len().saturating_sub(1))
        .rev()
        .find(|&i| is_word(tokens.get(i), "WITH") && tokens[i + 1] == Token::Punct('('));
    let Some(with) = with else {
        return Place::OtherString;
    };
    let options = &tokens[with + 2..];
    if options.contains(&Token::Punct(')')) {
        return Place::OtherString;
    }
    let connector = options.windows(3).find_map(|w| match w {
        [Token::Str(k), Token::Punct('='), Token::Str(v)] if k == "connector" => Some(v.clone()),
        _ => None,
    });
    match options {
        [] | [.., Token::Punct(',')] => Place::OptionKey { connector },
        [.., Token::Str(key), Token::Punct('=')] => Place::OptionValue {
            connector,
            key: key.clone(),
        },
        _ => Place::OtherString,
    }
}

/// The start of the SQL word that ends at `pos` (a qualified name's dots included).
fn word_start(line: &str, pos: usize) -> usize {
    line[..pos]
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '.')))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

/// The relation `qualifier` stands for in the statement: its name, or an alias given to one
/// (`telemetry t`, `telemetry AS t`).
fn relation_of<'v>(
    qualifier: &str,
    tokens: &[Token],
    vocabulary: &'v Vocabulary,
) -> Option<&'v str> {
    if let Some((name, _)) = vocabulary.relations.get_key_value(qualifier) {
        return Some(name);
    }
    tokens.iter().enumerate().find_map(|(i, t)| {
        let Token::Word(name) = t else { return None };
        let (name, _) = vocabulary.relations.get_key_value(name.as_str())?;
        let alias = if is_word(tokens.get(i + 1), "AS") {
            tokens.get(i + 2)
        } else {
            tokens.get(i + 1)
        };
        matches!(alias, Some(Token::Word(a)) if a == qualifier).then_some(name.as_str())
    })
}

/// Words for SQL at the cursor: columns first (of the relations the statement names, or of all
/// when it names none yet), then relations, functions and keywords.
fn sql_words(word: &str, tokens: &[Token], vocabulary: &Vocabulary) -> Vec<String> {
    if let Some((qualifier, column)) = word.rsplit_once('.') {
        let Some(relation) = relation_of(qualifier, tokens, vocabulary) else {
            return Vec::new();
        };
        return vocabulary.relations[relation]
            .iter()
            .filter(|c| c.starts_with(column))
            .map(|c| format!("{qualifier}.{c}"))
            .collect();
    }
    let named: Vec<&Vec<String>> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => vocabulary.relations.get(w.as_str()),
            _ => None,
        })
        .collect();
    let columns: Vec<&String> = if named.is_empty() {
        vocabulary.relations.values().flatten().collect()
    } else {
        named.into_iter().flatten().collect()
    };
    let upper = word.to_ascii_uppercase();
    let keywords = ALL_KEYWORDS
        .iter()
        .filter(|k| k.starts_with(&upper))
        .map(|k| k.to_string());
    let mut words: Vec<String> = columns
        .into_iter()
        .chain(vocabulary.relations.keys())
        .chain(&vocabulary.functions)
        .filter(|n| n.starts_with(word))
        .cloned()
        .chain(keywords)
        .collect();
    let mut seen = std::collections::HashSet::new();
    words.retain(|w| seen.insert(w.clone()));
    words
}

fn suggestions(line: &str, pos: usize, vocabulary: &Vocabulary) -> Vec<Suggestion> {
    let (tokens, string_start) = scan(&line[..pos]);
    let (start, words): (usize, Vec<String>) = match string_start {
        None => {
            let start = word_start(line, pos);
            let word = &line[start..pos];
            if word.is_empty() {
                return Vec::new();
            }
            // The statement's tables are named anywhere in it, also after the cursor.
            let end = line[pos..].find(';').map_or(line.len(), |i| pos + i);
            let (statement, _) = scan(&line[..end]);
            (start, sql_words(word, &statement, vocabulary))
        }
        Some(start) => {
            let typed = &line[start..pos];
            let candidates: Vec<&str> = match place(&tokens, true) {
                Place::SetKey => Settings::keys(),
                Place::SetValue(key) => Settings::about(&key).1.to_vec(),
                Place::OptionKey { connector } => match connector {
                    Some(c) => connector_options(&c).into_iter().map(|o| o.0).collect(),
                    None => vec!["connector"],
                },
                Place::OptionValue { connector, key } => {
                    let options = connector_options(connector.as_deref().unwrap_or_default());
                    options
                        .into_iter()
                        .find(|o| o.0 == key)
                        .map_or_else(Vec::new, |o| o.1.to_vec())
                }
                Place::OtherString | Place::Sql => Vec::new(),
            };
            let words = candidates
                .into_iter()
                .filter(|c| {
                    c.to_ascii_lowercase()
                        .starts_with(&typed.to_ascii_lowercase())
                })
                .map(str::to_string)
                .collect();
            (start, words)
        }
    };
    let typed = &line[start..pos];
    words
        .into_iter()
        .filter(|w| w != typed)
        .map(|value| Suggestion {
            value,
            span: Span::new(start, pos),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> Vocabulary {
        let mut v = Vocabulary::default();
        v.relations.insert(
            "telemetry".into(),
            vec!["vehicle_id".into(), "speed_kmh".into(), "ts".into()],
        );
        v.relations
            .insert("drivers".into(), vec!["driver_id".into(), "name".into()]);
        v.functions = vec!["sum".into(), "substr".into()];
        v
    }

    /// The suggestions with the cursor at `|` (else at the end).
    fn values(text: &str) -> Vec<String> {
        let pos = text.find('|').unwrap_or(text.len());
        let line = text.replacen('|', "", 1);
        suggestions(&line, pos, &vocabulary())
            .into_iter()
            .map(|s| s.value)
            .collect()
    }

    #[test]
    fn sql_words_are_columns_of_the_named_tables_then_names_functions_keywords() {
        assert_eq!(values("SELECT vehicle_id,speed_k"), ["speed_kmh"]);
        // The statement's tables are read from all of it, also after the cursor.
        assert_eq!(values("SELECT na| FROM drivers")[0], "name");
        assert_eq!(values("SELECT * FROM tele"), ["telemetry"]);
        assert!(values("sel").contains(&"SELECT".to_string()));
        // Only the named table's columns: `name` is drivers', not telemetry's.
        assert!(!values("SELECT n| FROM telemetry").contains(&"name".to_string()));
        assert_eq!(values("SELECT n| FROM drivers")[0], "name");
        assert_eq!(
            values("SELECT su")[..2],
            ["sum".to_string(), "substr".to_string()]
        );
        assert_eq!(values("SELECT t.sp| FROM telemetry t"), ["t.speed_kmh"]);
        assert_eq!(
            values("SELECT d.n| FROM telemetry AS x JOIN drivers AS d"),
            ["d.name"]
        );
        assert!(values("SELECT zz.n| FROM telemetry").is_empty());
    }

    #[test]
    fn set_completes_keys_then_their_values() {
        assert_eq!(
            values("SET 'execution.checkpointing.inter"),
            ["execution.checkpointing.interval"]
        );
        assert_eq!(values("SET 'restart-strategy.type' = 'f"), ["fixed-delay"]);
        assert_eq!(
            values("SET 'sql-client.execution.result-mode' = 't"),
            ["table", "tableau"]
        );
        let s = &suggestions("SET 'pipeline.na", 16, &vocabulary())[0];
        assert_eq!((s.span.start, s.span.end), (5, 16));
    }

    #[test]
    fn with_completes_the_connectors_options_and_their_choices() {
        let head = "CREATE TABLE t (a INT) WITH (";
        assert_eq!(values(&format!("{head}'conn")), ["connector"]);
        assert!(values(&format!("{head}'connector' = '")).contains(&"kafka".to_string()));
        let kafka = format!("{head}\n  'connector' = 'kafka',\n  'scan.startup.");
        assert!(values(&kafka).contains(&"scan.startup.mode".to_string()));
        let mode = format!("{head}'connector' = 'kafka', 'scan.startup.mode' = 'ear");
        assert_eq!(values(&mode), ["earliest-offset"]);
        assert_eq!(
            values(&format!("{head}'connector' = 'kafka', 'format' = '")),
            ["json", "csv", "raw", "debezium-json"]
        );
        // A string that is no option: nothing; a closed WITH: SQL words again.
        assert!(values("SELECT 'ab").is_empty());
        assert!(values(&format!("{head}'connector' = 'print') ; SELECT 'x")).is_empty());
    }
}
