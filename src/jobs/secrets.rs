//! Credentials stay out of listings and logs: the values of secret-looking `WITH` options and
//! `${VAR}`s are shown as `******`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::options::{MASK, is_secret_name};

/// `'<key>' = '<value>'` where the key names a secret.
static SECRET_OPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)('[^']*(?:password|secret|token|jaas|credential|private)[^']*'\s*=\s*)'(?:[^']|'')*'",
    )
    .expect("a valid pattern")
});

/// The SQL text with the values of secret options masked.
pub fn mask_sql(sql: &str) -> String {
    SECRET_OPTION
        .replace_all(sql, format!("${{1}}'{MASK}'"))
        .into_owned()
}

/// A password in a URL: `scheme://user:password@`.
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):[^@\s/]+@").expect("a valid pattern")
});

/// Hides one job's secrets in any text shown about it (errors, log lines, EXPLAIN): the values
/// of its secret variables and secret options wherever they appear, and passwords in URLs.
pub struct Masker {
    values: Vec<String>,
}

impl Masker {
    pub fn new(sql: &str, vars: &BTreeMap<String, String>) -> Self {
        let mut values: Vec<String> = vars
            .iter()
            .filter(|(k, _)| is_secret_name(k))
            .map(|(_, v)| v.clone())
            .collect();
        for c in SECRET_OPTION.captures_iter(sql) {
            let whole = c.get(0).expect("a match").as_str();
            let value = &whole[c.get(1).expect("the key").as_str().len()..];
            values.push(value.trim_matches('\'').replace("''", "'"));
        }
        // Short values would mask ordinary words; `${VAR}`s are not values.
        values.retain(|v| v.len() >= 4 && !v.starts_with("${"));
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Masker { values }
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = URL_PASSWORD
            .replace_all(text, format!("${{1}}:{MASK}@"))
            .into_owned();
        for v in &self.values {
            out = out.replace(v.as_str(), MASK);
        }
        out
    }
}

/// The variables with secret values masked.
pub fn mask_variables(vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    vars.iter()
        .map(|(k, v)| {
            let v = if is_secret_name(k) {
                MASK.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_the_rest_is_left_alone() {
        let sql = "WITH ('connector' = 'clickhouse', 'password' = 'hunter2', \
                   'properties.sasl.jaas.config' = 'x required password=\"p\";', 'key.fields' = 'id')";
        let masked = mask_sql(sql);
        assert!(
            !masked.contains("hunter2") && !masked.contains("required"),
            "{masked}"
        );
        assert!(masked.contains("'password' = '******'") && masked.contains("'key.fields' = 'id'"));
        let vars: BTreeMap<String, String> = [
            ("CLICKHOUSE_PASSWORD", "p"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("CLICKHOUSE_URL", "http://ch:8123"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let shown = mask_variables(&vars);
        assert_eq!(shown["CLICKHOUSE_PASSWORD"], MASK);
        assert_eq!(shown["AWS_SECRET_ACCESS_KEY"], MASK);
        assert_eq!(shown["CLICKHOUSE_URL"], "http://ch:8123");
    }

    #[test]
    fn a_jobs_secrets_are_masked_wherever_they_appear() {
        let sql = "WITH ('password' = 'hunter2', 'url' = '${CH_URL}')";
        let vars: BTreeMap<String, String> = [("SASL_PASSWORD", "swordfish"), ("CH_URL", "x")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let masker = Masker::new(sql, &vars);
        let shown = masker
            .text("login failed for hunter2 / swordfish at https://alice:opensesame@ch:8443/?db=x");
        assert_eq!(
            shown,
            "login failed for ****** / ****** at https://alice:******@ch:8443/?db=x"
        );
    }
}
