//! `SET 'key' = 'value'`: the settings a script may change, read once into a typed struct.
//!
//! Every key Sluice accepts changes what it does; a key it does not honour (yet) is rejected
//! with the reason, never accepted and ignored — a Flink file relying on a setting must not run
//! with a different meaning.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checkpoint::CheckpointConfig;
use crate::options::parse_duration;
use crate::plan::MiniBatch;

/// Where late rows of windows and MATCH_RECOGNIZE go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LateRows {
    /// Dropped and counted (Flink's behaviour).
    #[default]
    Drop,
    /// Written, whole, to this table.
    SideOutput(String),
}

/// How the shell shows a query's rows (Flink's `sql-client.execution.result-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultMode {
    /// Rows as they come, with their kind, in the terminal's scrollback.
    Tableau,
    /// The same, as Flink's `changelog` mode shows the changes.
    Changelog,
    /// The current result on a screen of its own, refreshed in place.
    Table,
}

/// The SQL client's `sql-client.*` keys: how the shell shows results. A file takes them too
/// (one grammar for files and the shell); only the shell shows results with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub result_mode: ResultMode,
    /// `sql-client.execution.max-table-result.rows`: rows the `table` view keeps.
    pub max_table_rows: usize,
    /// `sql-client.display.max-column-width`: longer values are cut.
    pub max_column_width: usize,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            result_mode: ResultMode::Tableau,
            max_table_rows: 1_000_000,
            max_column_width: 30,
        }
    }
}

/// The settings in force, typed. `values` keeps the text as given, for `SET;` listings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pipeline_name: Option<String>,
    /// `parallelism.default`; `None`: the machine's cores.
    parallelism: Option<usize>,
    /// `table.exec.source.idle-timeout`: for every source without its own
    /// `scan.watermark.idle-timeout`; `None` (or 0, as in Flink) = splits never count as idle.
    pub idle_timeout: Option<Duration>,
    pub late_rows: LateRows,
    /// `table.exec.window.allowed-lateness` in milliseconds.
    pub allowed_lateness_ms: i64,
    /// `table.optimizer.reuse-sub-plan-enabled`.
    pub reuse_sub_plan: bool,
    /// `table.optimizer.agg-phase-strategy`: false for `ONE_PHASE` (window aggregates without a
    /// key stay whole).
    pub two_phase: bool,
    /// `table.exec.state.ttl`: how long an updating aggregate keeps a key after its last change
    /// (`None`, or 0 as in Flink: forever).
    pub state_ttl: Option<Duration>,
    /// `sluice.workers` = `kafka-group`: every process running the job (by `pipeline.name`)
    /// is one of its workers, and they share the topic's partitions.
    pub workers: bool,
    /// `table.exec.mini-batch.enabled`, `.allow-latency` and `.size`, as given: see
    /// [`Settings::mini_batch`].
    mini_batch_enabled: bool,
    mini_batch_latency: Duration,
    mini_batch_size: Option<usize>,
    /// `execution.checkpointing.*`, `execution.savepoint.*`, `restart-strategy.*`.
    pub checkpoint: CheckpointConfig,
    pub client: ClientSettings,
    values: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pipeline_name: None,
            parallelism: None,
            idle_timeout: None,
            late_rows: LateRows::Drop,
            allowed_lateness_ms: 0,
            reuse_sub_plan: true,
            two_phase: true,
            state_ttl: None,
            workers: false,
            mini_batch_enabled: false,
            mini_batch_latency: Duration::ZERO,
            mini_batch_size: None,
            checkpoint: CheckpointConfig::default(),
            client: ClientSettings::default(),
            values: BTreeMap::new(),
        }
    }
}

/// Keys Sluice honours, for error messages.
const KNOWN: &[&str] = &[
    "pipeline.name",
    "execution.runtime-mode",
    "parallelism.default",
    "table.exec.source.idle-timeout",
    "table.local-time-zone",
    "table.exec.late-rows",
    "table.exec.window.allowed-lateness",
    "table.optimizer.reuse-sub-plan-enabled",
    "table.optimizer.agg-phase-strategy",
    "table.exec.state.ttl",
    "table.exec.mini-batch.enabled",
    "table.exec.mini-batch.allow-latency",
    "table.exec.mini-batch.size",
    "sql-client.execution.result-mode",
    "sql-client.execution.max-table-result.rows",
    "sql-client.display.max-column-width",
    "sluice.workers",
];

/// The most subtasks a pipeline can have: one per key group at the default
/// `pipeline.max-parallelism`.
const MAX_PARALLELISM: usize = 128;

impl Settings {
    /// How many subtasks a keyed pipeline runs as: `parallelism.default`, else one per core.
    pub fn parallelism(&self) -> usize {
        self.parallelism.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        })
    }

    /// Every key `SET` accepts (for the shell's completion).
    pub fn keys() -> Vec<&'static str> {
        KNOWN
            .iter()
            .chain(crate::checkpoint::KEYS)
            .copied()
            .collect()
    }

    /// A key's default and the values it takes (empty: free text), for `SET;` and the
    /// shell's completion.
    pub fn about(key: &str) -> (&'static str, &'static [&'static str]) {
        const BOOL: &[&str] = &["true", "false"];
        match key {
            "pipeline.name" => ("the file's name", &[]),
            "execution.runtime-mode" => ("streaming", &["streaming"]),
            "parallelism.default" => ("the number of cores", &[]),
            "table.exec.source.idle-timeout" => ("0 ms (never idle)", &[]),
            "table.local-time-zone" => ("UTC", &["UTC"]),
            "table.exec.late-rows" => ("drop", &["drop", "side-output:"]),
            "table.exec.window.allowed-lateness" => ("0 ms", &[]),
            "table.optimizer.reuse-sub-plan-enabled" => ("true", BOOL),
            "table.optimizer.agg-phase-strategy" => ("AUTO", &["AUTO", "ONE_PHASE", "TWO_PHASE"]),
            "table.exec.state.ttl" => ("0 ms (state kept forever)", &[]),
            "table.exec.mini-batch.enabled" => ("false", BOOL),
            "table.exec.mini-batch.allow-latency" => ("0 ms (to be set when enabled)", &[]),
            "table.exec.mini-batch.size" => ("-1 (to be set when enabled)", &[]),
            "execution.checkpointing.interval" => {
                ("10 s when a source is unbounded, else off", &[])
            }
            "execution.checkpointing.dir" | "state.checkpoints.dir" => {
                ("<data dir>/checkpoints/<job>", &[])
            }
            "execution.checkpointing.mode" => ("EXACTLY_ONCE", &["EXACTLY_ONCE", "AT_LEAST_ONCE"]),
            "execution.checkpointing.num-retained" | "state.checkpoints.num-retained" => ("1", &[]),
            "execution.checkpointing.timeout" => ("10 min", &[]),
            "execution.savepoint.path" => ("none (the latest checkpoint)", &[]),
            "execution.savepoint.ignore-unclaimed-state" => ("false", BOOL),
            "pipeline.max-parallelism" => ("128", &[]),
            "restart-strategy.type" => (
                "exponential-delay with checkpoints, else none",
                &["none", "fixed-delay", "exponential-delay"],
            ),
            "restart-strategy.exponential-delay.initial-backoff" => ("1 s", &[]),
            "restart-strategy.exponential-delay.max-backoff" => ("1 min", &[]),
            "restart-strategy.exponential-delay.backoff-multiplier" => ("1.5", &[]),
            "restart-strategy.exponential-delay.attempts-before-reset-backoff" => ("no limit", &[]),
            "restart-strategy.exponential-delay.reset-backoff-threshold" => ("1 h", &[]),
            "restart-strategy.fixed-delay.attempts" => ("1", &[]),
            "restart-strategy.fixed-delay.delay" => ("1 s", &[]),
            "sql-client.execution.result-mode" => ("tableau", &["table", "tableau", "changelog"]),
            "sql-client.execution.max-table-result.rows" => ("1000000", &[]),
            "sql-client.display.max-column-width" => ("30", &[]),
            "sluice.workers" => ("single", &["single", "kafka-group"]),
            _ => ("", &[]),
        }
    }

    /// Applies `SET key = value`; the error says why the value (or key) is not accepted.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        match key {
            "pipeline.name" => self.pipeline_name = Some(v.to_string()),
            "execution.runtime-mode" if v.eq_ignore_ascii_case("streaming") => {}
            "execution.runtime-mode" => {
                return Err(
                    "Sluice runs in 'streaming' mode only; bounded sources end by themselves"
                        .into(),
                );
            }
            "parallelism.default" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PARALLELISM).contains(&n) => self.parallelism = Some(n),
                _ => {
                    return Err(format!(
                        "'parallelism.default' = '{value}': expected a whole number from 1 to {MAX_PARALLELISM}"
                    ));
                }
            },
            "table.exec.source.idle-timeout" => {
                let d = duration(key, v)?;
                self.idle_timeout = (!d.is_zero()).then_some(d);
            }
            "table.local-time-zone" if is_utc(v) => {}
            "table.local-time-zone" => {
                return Err(format!(
                    "'table.local-time-zone' = '{value}' is not supported yet: Sluice shows and computes TIMESTAMP_LTZ in UTC; set it to 'UTC' or remove it"
                ));
            }
            "table.exec.late-rows" => {
                self.late_rows = if v.eq_ignore_ascii_case("drop") {
                    LateRows::Drop
                } else {
                    match v.strip_prefix("side-output:").map(str::trim) {
                        Some(table) if !table.is_empty() => LateRows::SideOutput(table.to_string()),
                        _ => {
                            return Err(format!(
                                "'table.exec.late-rows' = '{value}': expected 'drop' or 'side-output:<table>'"
                            ));
                        }
                    }
                }
            }
            "table.exec.state.ttl" => {
                let d = duration(key, v)?;
                self.state_ttl = (!d.is_zero()).then_some(d);
            }
            "table.exec.mini-batch.enabled" => self.mini_batch_enabled = boolean(key, v)?,
            "table.exec.mini-batch.allow-latency" => {
                self.mini_batch_latency = duration(key, v)?;
            }
            "table.exec.mini-batch.size" => {
                // Flink's default, -1, means "not set".
                self.mini_batch_size = if v == "-1" {
                    None
                } else {
                    Some(positive(key, v, 1, "a number of rows")?)
                };
            }
            "table.exec.window.allowed-lateness" => {
                let d = duration(key, v)?;
                self.allowed_lateness_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            }
            "table.optimizer.reuse-sub-plan-enabled" => self.reuse_sub_plan = boolean(key, v)?,
            "table.optimizer.agg-phase-strategy" => {
                self.two_phase = match v.to_ascii_uppercase().as_str() {
                    "AUTO" | "TWO_PHASE" => true,
                    "ONE_PHASE" => false,
                    _ => {
                        return Err(format!(
                            "'{key}' = '{v}' must be 'AUTO', 'ONE_PHASE' or 'TWO_PHASE'"
                        ));
                    }
                };
            }
            "sql-client.execution.result-mode" => {
                self.client.result_mode = match v.to_ascii_lowercase().as_str() {
                    "tableau" => ResultMode::Tableau,
                    "changelog" => ResultMode::Changelog,
                    "table" => ResultMode::Table,
                    _ => {
                        return Err(format!(
                            "'{key}' = '{value}': expected 'table', 'tableau' or 'changelog'"
                        ));
                    }
                }
            }
            "sql-client.execution.max-table-result.rows" => {
                self.client.max_table_rows = positive(key, v, 1, "a number of rows")?;
            }
            "sql-client.display.max-column-width" => {
                self.client.max_column_width = positive(key, v, 4, "a number of characters")?;
            }
            "sluice.workers" => {
                self.workers = match v.to_ascii_lowercase().as_str() {
                    "single" => false,
                    "kafka-group" => true,
                    _ => {
                        return Err(format!(
                            "'{key}' = '{value}': expected 'single' (this process runs the whole job) or 'kafka-group' (every process running it shares the topic's partitions)"
                        ));
                    }
                };
            }
            k if CheckpointConfig::handles(k) => self.checkpoint.set(k, v)?,
            other => {
                return Err(format!(
                    "unknown setting '{other}'; Sluice accepts: {}, and the checkpoint keys {}",
                    KNOWN.join(", "),
                    crate::checkpoint::KEYS.join(", ")
                ));
            }
        }
        self.values.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// The mini-batch in force: `None` unless enabled; enabled, it needs both the latency and
    /// the size (as Flink does) — the error says which is missing.
    pub fn mini_batch(&self) -> Result<Option<MiniBatch>, String> {
        if !self.mini_batch_enabled {
            return Ok(None);
        }
        if self.mini_batch_latency.is_zero() {
            return Err("'table.exec.mini-batch.enabled' is 'true' but 'table.exec.mini-batch.allow-latency' is not set: give how long rows may wait, e.g. SET 'table.exec.mini-batch.allow-latency' = '2 s'".into());
        }
        let Some(size) = self.mini_batch_size else {
            return Err("'table.exec.mini-batch.enabled' is 'true' but 'table.exec.mini-batch.size' is not set: give how many rows a mini-batch holds at most, e.g. SET 'table.exec.mini-batch.size' = '5000'".into());
        };
        Ok(Some(MiniBatch {
            allow_latency: self.mini_batch_latency,
            size,
        }))
    }

    /// `RESET 'key'`: back to its default.
    pub fn reset(&mut self, key: &str) {
        let mut values = std::mem::take(&mut self.values);
        values.remove(key);
        *self = Settings::default();
        for (k, v) in &values {
            self.set(k, v)
                .expect("a value accepted once is accepted again");
        }
    }

    /// `RESET`: every setting back to its default.
    pub fn reset_all(&mut self) {
        *self = Settings::default();
    }

    /// The settings given, as text.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }
}

/// `value` as a number of at least `min`.
fn positive(key: &str, value: &str, min: usize, what: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| format!("'{key}' = '{value}' must be {what}, {min} or more"))
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("'{key}' = '{value}' must be 'true' or 'false'")),
    }
}

fn duration(key: &str, value: &str) -> Result<Duration, String> {
    parse_duration(value)
        .ok_or_else(|| format!("'{key}' = '{value}' is not a duration such as '30 s' or '1 min'"))
}

fn is_utc(zone: &str) -> bool {
    ["UTC", "Z", "Etc/UTC", "GMT", "+00:00", "UTC+0", "GMT+0"]
        .iter()
        .any(|z| z.eq_ignore_ascii_case(zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_default_and_its_listed_values_are_accepted() {
        for key in Settings::keys() {
            let (default, values) = Settings::about(key);
            assert!(!default.is_empty(), "no default described for '{key}'");
            for v in values.iter().filter(|v| !v.ends_with(':')) {
                let mut s = Settings::default();
                s.set(key, v)
                    .unwrap_or_else(|e| panic!("'{key}' = '{v}' refused: {e}"));
            }
        }
    }

    #[test]
    fn typed_values() {
        let mut s = Settings::default();
        s.set("table.exec.source.idle-timeout", "5 s").unwrap();
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(5)));
        s.set("table.exec.source.idle-timeout", "0").unwrap();
        assert_eq!(s.idle_timeout, None, "0 disables idleness, as in Flink");
        s.set("table.exec.late-rows", "side-output:late").unwrap();
        assert_eq!(s.late_rows, LateRows::SideOutput("late".into()));
        s.set("table.exec.window.allowed-lateness", "1 min")
            .unwrap();
        assert_eq!(s.allowed_lateness_ms, 60_000);
        s.set("table.optimizer.reuse-sub-plan-enabled", "FALSE")
            .unwrap();
        assert!(!s.reuse_sub_plan);
        s.set("parallelism.default", "4").unwrap();
        assert_eq!(s.parallelism(), 4);
    }

    #[test]
    fn settings_without_effect_are_rejected() {
        let mut s = Settings::default();
        for (k, v) in [
            ("parallelism.default", "0"),
            ("parallelism.default", "two"),
            ("parallelism.default", "129"),
            ("table.local-time-zone", "Europe/Berlin"),
            ("execution.checkpointing.interval", "often"),
            ("state.backend.type", "rocksdb"),
            ("sql-client.execution.result-mode", "tabel"),
            ("sql-client.display.max-column-width", "2"),
            ("table.exec.mini-batch.enabled", "yes"),
            ("table.exec.mini-batch.size", "0"),
            ("execution.runtime-mode", "batch"),
            ("table.exec.source.idle-timeout", "soon"),
            ("table.exec.late-rows", "keep"),
        ] {
            assert!(s.set(k, v).is_err(), "{k} = {v} must be rejected");
        }
        assert!(s.values().is_empty());
        s.set("parallelism.default", "1").unwrap();
        s.set("table.local-time-zone", "UTC").unwrap();
    }

    #[test]
    fn the_sql_clients_display_keys_are_taken_as_in_the_shell() {
        let mut s = Settings::default();
        s.set("sql-client.execution.result-mode", "TABLE").unwrap();
        s.set("sql-client.execution.max-table-result.rows", "500")
            .unwrap();
        s.set("sql-client.display.max-column-width", "12").unwrap();
        let expected = ClientSettings {
            result_mode: ResultMode::Table,
            max_table_rows: 500,
            max_column_width: 12,
        };
        assert_eq!(s.client, expected);
    }

    #[test]
    fn mini_batch_needs_latency_and_size_once_enabled() {
        let mut s = Settings::default();
        s.set("table.exec.mini-batch.size", "5000").unwrap();
        assert_eq!(s.mini_batch(), Ok(None), "off until enabled");
        s.set("table.exec.mini-batch.enabled", "true").unwrap();
        let missing = s.mini_batch().unwrap_err();
        assert!(missing.contains("allow-latency"), "{missing}");
        s.set("table.exec.mini-batch.allow-latency", "2 s").unwrap();
        let expected = MiniBatch {
            allow_latency: Duration::from_secs(2),
            size: 5000,
        };
        assert_eq!(s.mini_batch(), Ok(Some(expected)));
        s.set("table.exec.mini-batch.size", "-1").unwrap();
        let missing = s.mini_batch().unwrap_err();
        assert!(missing.contains("mini-batch.size"), "{missing}");
    }

    #[test]
    fn reset_restores_defaults() {
        let mut s = Settings::default();
        s.set("table.exec.source.idle-timeout", "5 s").unwrap();
        s.set("pipeline.name", "p").unwrap();
        s.reset("table.exec.source.idle-timeout");
        assert_eq!(s.idle_timeout, None);
        assert_eq!(s.pipeline_name.as_deref(), Some("p"));
        s.reset_all();
        assert!(s.values().is_empty());
    }
}
