//! Errors of the SQL layer, positioned in the user's file.
//!
//! Every mistake a user can make in a `.sql` file is reported as `file:line:col` plus the offending
//! line with a caret, the way compilers do, so an editor can jump to it.

use std::fmt;
use std::sync::Arc;

/// A position in a script: 1-based line and column, as sqlparser reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl From<datafusion::sql::sqlparser::tokenizer::Location> for Position {
    fn from(l: datafusion::sql::sqlparser::tokenizer::Location) -> Self {
        Position {
            line: l.line,
            column: l.column,
        }
    }
}

/// The text of a script and the name it is reported under.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub name: String,
    pub text: Arc<str>,
}

impl SourceText {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        SourceText {
            name: name.into(),
            text: text.into(),
        }
    }

    /// An error at `pos` in this script.
    pub fn error(&self, pos: Position, message: impl Into<String>) -> SqlError {
        let line = (pos.line > 0)
            .then(|| self.text.lines().nth(pos.line as usize - 1))
            .flatten()
            .map(str::to_string);
        SqlError {
            file: self.name.clone(),
            pos,
            message: message.into(),
            line,
        }
    }
}

/// A mistake in a SQL script, with where it is.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SqlError {
    pub file: String,
    pub pos: Position,
    pub message: String,
    /// The source line the error points into, to print with a caret.
    pub line: Option<String>,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.column, self.message
        )?;
        if let Some(line) = &self.line {
            let gutter = self.pos.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret = " ".repeat(self.pos.column.saturating_sub(1) as usize);
            write!(f, "\n{pad} |\n{gutter} | {line}\n{pad} | {caret}^")?;
        }
        Ok(())
    }
}

/// Splits sqlparser's "… at Line: L, Column: C" message into the text and the position.
pub fn split_parser_message(message: &str) -> (String, Option<Position>) {
    let Some(at) = message.rfind(" at Line: ") else {
        return (message.to_string(), None);
    };
    let rest = &message[at + " at Line: ".len()..];
    let mut parts = rest.splitn(2, ", Column: ");
    let line = parts.next().and_then(|l| l.trim().parse().ok());
    let column = parts.next().and_then(|c| c.trim().parse().ok());
    match (line, column) {
        (Some(line), Some(column)) => (message[..at].to_string(), Some(Position { line, column })),
        _ => (message.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_column_and_caret() {
        let src = SourceText::new("a.sql", "SELECT 1;\nSELEC x;");
        let e = src.error(Position { line: 2, column: 3 }, "expected a statement");
        let text = e.to_string();
        assert!(
            text.starts_with("a.sql:2:3: expected a statement"),
            "{text}"
        );
        assert!(text.contains("2 | SELEC x;\n  |   ^"), "{text}");
    }

    #[test]
    fn splits_sqlparser_location_suffix() {
        let (m, p) = split_parser_message("Expected: ), found: WITH at Line: 12, Column: 5");
        assert_eq!(m, "Expected: ), found: WITH");
        assert_eq!(
            p,
            Some(Position {
                line: 12,
                column: 5
            })
        );
        assert_eq!(split_parser_message("plain").1, None);
    }
}
