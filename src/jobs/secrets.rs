//! Credentials stay out of listings and logs: the values of secret-looking `WITH` options and
//! `${VAR}`s are shown as `******`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

const MASK: &str = "******";

/// `'<key>' = '<value>'` where the key names a secret.
static SECRET_OPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)('[^']*(?:password|secret|token|jaas|credential|private)[^']*'\s*=\s*)'(?:[^']|'')*'",
    )
    .expect("a valid pattern")
});

/// Whether a variable's name says it holds a secret (`CLICKHOUSE_PASSWORD`, `AWS_SECRET_ACCESS_KEY`).
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

/// The SQL text with the values of secret options masked.
pub fn mask_sql(sql: &str) -> String {
    SECRET_OPTION
        .replace_all(sql, format!("${{1}}'{MASK}'"))
        .into_owned()
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
}
