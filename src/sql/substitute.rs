//! `${VAR}` and `${VAR:-default}` substitution, done on the text before parsing (as Flink's SQL
//! client does), so a variable may stand anywhere: in a string literal, a number, an identifier.

use super::error::{Position, SourceText, SqlError};

/// Replaces every `${NAME}` / `${NAME:-default}` with the value `lookup` gives for NAME.
/// An unset variable without a default is an error naming it and its position.
pub fn substitute_variables(
    src: &SourceText,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SqlError> {
    let text = &*src.text;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed = 0usize;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let pos = position_of(text, consumed + start);
        let Some(end) = after.find('}') else {
            return Err(src.error(pos, "unterminated `${` variable reference (missing `}`)"));
        };
        let body = &after[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n.trim(), Some(d)),
            None => (body.trim(), None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(src.error(pos, format!("`${{{body}}}` is not a valid variable name")));
        }
        match lookup(name)
            .filter(|v| !v.is_empty())
            .or(default.map(str::to_string))
        {
            Some(value) => out.push_str(&value),
            None => {
                return Err(src.error(
                    pos,
                    format!(
                        "variable `{name}` is not set; export it or give a default: `${{{name}:-value}}`"
                    ),
                ));
            }
        }
        let advance = start + 2 + end + 1;
        consumed += advance;
        rest = &rest[advance..];
    }
    out.push_str(rest);
    Ok(out)
}

fn position_of(text: &str, byte: usize) -> Position {
    let before = &text[..byte];
    let line = before.matches('\n').count() as u64 + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    Position { line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BROKERS" => Some("k1:9092".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_and_default_values() {
        let src = SourceText::new("t.sql", "'${BROKERS}' '${MISSING:-x:1}' '${EMPTY:-d}'");
        assert_eq!(
            substitute_variables(&src, env).unwrap(),
            "'k1:9092' 'x:1' 'd'"
        );
    }

    #[test]
    fn unset_without_default_names_variable_and_position() {
        let src = SourceText::new("t.sql", "SELECT 1;\n  '${NOPE}'");
        let err = substitute_variables(&src, env).unwrap_err();
        assert_eq!((err.pos.line, err.pos.column), (2, 4));
        assert!(err.message.contains("`NOPE` is not set"), "{}", err.message);
    }
}
