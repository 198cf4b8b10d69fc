//! Typed reading of a table's `WITH (...)` options.
//!
//! Each connector (and format) reads its options through an [`OptionReader`] when the table is
//! declared; when it is done, [`OptionReader::finish`] rejects every key nobody asked for, listing
//! the valid ones. So a typo in an option is an error before anything runs, never a silently
//! ignored setting. Errors say which option (or column) they are about; the SQL layer turns that
//! into a file:line:column.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

/// What an [`OptionError`] is about, so the SQL layer can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionPlace {
    /// The value of this option (the table's name when the option is absent).
    Option(String),
    /// A column of the table.
    Column(String),
    /// The table as a whole.
    Table,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OptionError {
    pub place: OptionPlace,
    pub message: String,
}

impl OptionError {
    pub fn at_option(key: &str, message: impl Into<String>) -> Self {
        OptionError {
            place: OptionPlace::Option(key.to_string()),
            message: message.into(),
        }
    }

    pub fn at_column(column: &str, message: impl Into<String>) -> Self {
        OptionError {
            place: OptionPlace::Column(column.to_string()),
            message: message.into(),
        }
    }

    pub fn at_table(message: impl Into<String>) -> Self {
        OptionError {
            place: OptionPlace::Table,
            message: message.into(),
        }
    }
}

pub struct OptionReader<'a> {
    table: &'a str,
    options: &'a [(String, String)],
    connector: String,
    /// Keys (or `prefix*` patterns) the connector understands, for the "valid options" list.
    known: RefCell<BTreeSet<String>>,
    used: RefCell<BTreeSet<String>>,
}

impl<'a> OptionReader<'a> {
    /// A reader of `options` (key, value, as declared) of table `table`.
    pub fn new(table: &'a str, options: &'a [(String, String)], connector: &str) -> Self {
        let reader = OptionReader {
            table,
            options,
            connector: connector.to_string(),
            known: RefCell::default(),
            used: RefCell::default(),
        };
        reader.mark("connector");
        reader
    }

    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// The name of the table the options belong to.
    pub fn table(&self) -> &str {
        self.table
    }

    fn mark(&self, key: &str) {
        self.known.borrow_mut().insert(key.to_string());
        self.used.borrow_mut().insert(key.to_string());
    }

    fn find(&self, key: &str) -> Option<&'a str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// An error about `key`'s value (or the table, when the key is absent).
    pub fn error(&self, key: &str, message: impl Into<String>) -> OptionError {
        OptionError::at_option(key, message)
    }

    pub fn optional(&self, key: &str) -> Option<String> {
        self.mark(key);
        self.find(key).map(str::to_string)
    }

    pub fn required(&self, key: &str) -> Result<String, OptionError> {
        self.optional(key).ok_or_else(|| {
            let given: Vec<String> = self.options.iter().map(|(k, _)| k.clone()).collect();
            let hint = closest(key, &given)
                .map(|k| format!(" ('{k}' is given: a typo?)"))
                .unwrap_or_default();
            self.error(
                key,
                format!(
                    "table `{}`: connector '{}' requires option '{key}'{hint}",
                    self.table, self.connector
                ),
            )
        })
    }

    /// An option parsed with `FromStr`, or `default`.
    pub fn parse_or<T: FromStr>(
        &self,
        key: &str,
        default: T,
        what: &str,
    ) -> Result<T, OptionError> {
        match self.optional(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| self.error(key, format!("option '{key}' = '{v}' is not {what}"))),
        }
    }

    pub fn parse_opt<T: FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, OptionError> {
        match self.optional(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.error(key, format!("option '{key}' = '{v}' is not {what}"))),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, OptionError> {
        match self.optional(key).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" => Ok(false),
            Some(v) => Err(self.error(
                key,
                format!("option '{key}' = '{v}' must be 'true' or 'false'"),
            )),
        }
    }

    pub fn duration_opt(&self, key: &str) -> Result<Option<Duration>, OptionError> {
        match self.optional(key) {
            None => Ok(None),
            Some(v) => parse_duration(&v).map(Some).ok_or_else(|| {
                self.error(
                    key,
                    format!(
                        "option '{key}' = '{v}' is not a duration such as '500 ms', '5 s', '1 min'"
                    ),
                )
            }),
        }
    }

    /// One of a fixed set of values (case-insensitive), or `default`.
    pub fn choice_or(
        &self,
        key: &str,
        choices: &[&str],
        default: &str,
    ) -> Result<String, OptionError> {
        let value = self.optional(key).unwrap_or_else(|| default.to_string());
        choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(&value))
            .map(|c| c.to_string())
            .ok_or_else(|| {
                self.error(
                    key,
                    format!(
                        "option '{key}' = '{value}' must be one of: {}",
                        choices.join(", ")
                    ),
                )
            })
    }

    /// All options under `prefix` (the prefix stripped), e.g. Kafka's `properties.*`.
    pub fn prefixed(&self, prefix: &str) -> Vec<(String, String)> {
        self.known.borrow_mut().insert(format!("{prefix}*"));
        let mut out = Vec::new();
        for (key, value) in self.options {
            if let Some(rest) = key.strip_prefix(prefix) {
                self.used.borrow_mut().insert(key.clone());
                out.push((rest.to_string(), value.clone()));
            }
        }
        out
    }

    /// Declares `key` as valid without reading it (read elsewhere, e.g. by the format).
    pub fn allow(&self, key: &str) {
        self.mark(key);
    }

    /// `sink.parallelism` as Flink files write it: a sink writes from each subtask of its
    /// pipeline, with no parallelism of its own; `1` is taken (Flink files often say it),
    /// another value is an error rather than a setting without effect.
    pub fn sink_parallelism(&self) -> Result<(), OptionError> {
        let key = "sink.parallelism";
        match self.optional(key) {
            Some(v) if v.trim() != "1" => Err(self.error(
                key,
                format!("'{key}' = '{v}' is not supported yet: a sink writes from each subtask of its pipeline ('parallelism.default'); set it to '1' or remove it"),
            )),
            _ => Ok(()),
        }
    }

    /// Fails on the first option no reader asked for, listing the valid options.
    pub fn finish(self) -> Result<(), OptionError> {
        let used = self.used.borrow();
        for (key, _) in self.options {
            if !used.contains(key) {
                let known: Vec<String> = self.known.borrow().iter().cloned().collect();
                let hint = closest(key, &known)
                    .map(|k| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                return Err(OptionError::at_option(
                    key,
                    format!(
                        "unknown option '{}' for connector '{}'{hint}; valid options: {}",
                        key,
                        self.connector,
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What a secret value is shown as.
pub const MASK: &str = "******";

/// Whether an option's or variable's name says it holds a secret (`password`,
/// `CLICKHOUSE_PASSWORD`, `AWS_SECRET_ACCESS_KEY`).
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "SECRET",
        "TOKEN",
        "CREDENTIAL",
        "PRIVATE",
        "JAAS",
    ]
    .iter()
    .any(|s| n.contains(s))
        || n.ends_with("_KEY")
}

/// Parses Flink-style durations: `500ms`, `5 s`, `10 sec`, `1 min`, `2 h`, `1 d`, or a bare number
/// of milliseconds. `None` for anything else, also for a duration too long to represent.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().ok()?;
    let millis = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(value * millis / 1000.0).ok()
}

/// The known key nearest to a mistyped one (edit distance ≤ 3), for "did you mean".
fn closest<'k>(key: &str, known: &'k [String]) -> Option<&'k String> {
    known
        .iter()
        .filter(|k| !k.ends_with('*'))
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flink_durations() {
        assert_eq!(parse_duration("500 ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1 min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5 parsecs"), None);
        // Once a panic inside `Duration::from_secs_f64`.
        assert_eq!(parse_duration("99999999999999999999999 d"), None);
        assert_eq!(parse_duration("1e400"), None);
    }

    #[test]
    fn suggests_nearest_known_key() {
        let known = vec![
            "topic".to_string(),
            "format".to_string(),
            "properties.*".to_string(),
        ];
        assert_eq!(closest("fromat", &known), Some(&known[1]));
        assert_eq!(closest("completely-else", &known), None);
    }
}
