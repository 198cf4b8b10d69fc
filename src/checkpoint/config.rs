//! Checkpoint and restart settings under Flink's keys, from `SET` in a file or `settings:` in
//! `sluice.yaml` (the file wins). Unset fields take the defaults documented on each accessor.

use std::path::PathBuf;
use std::time::Duration;

use crate::options::parse_duration;

/// How sinks take part in checkpoints (`execution.checkpointing.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    /// Sinks that can (ClickHouse, files) write a checkpoint's rows only once it completes,
    /// idempotently: a restore neither loses nor repeats a row.
    ExactlyOnce,
    /// Sinks write at once and flush at each checkpoint: a restore may repeat rows written
    /// after the last checkpoint, never lose any.
    AtLeastOnce,
}

/// What happens when a running job fails (`restart-strategy.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct RestartStrategy {
    /// Restarts allowed before the job fails for good (`u32::MAX`: no limit).
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub multiplier: f64,
    /// Running this long without failing forgets earlier failures.
    pub reset_after: Duration,
}

impl RestartStrategy {
    /// Flink's `none`: the first failure ends the job.
    pub fn none() -> Self {
        RestartStrategy {
            attempts: 0,
            initial_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            multiplier: 1.0,
            reset_after: Duration::MAX,
        }
    }

    /// Flink's `exponential-delay` defaults: 1 s doubling-ish (×1.5) up to 1 min, no limit on
    /// attempts, failures forgotten after an hour of running.
    pub fn exponential_delay() -> Self {
        RestartStrategy {
            attempts: u32::MAX,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 1.5,
            reset_after: Duration::from_secs(3600),
        }
    }

    /// The wait before restart number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(64) as i32);
        self.initial_backoff
            .mul_f64(factor.min(1e9))
            .min(self.max_backoff)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointConfig {
    /// `execution.checkpointing.interval`; `Some(ZERO)` turns checkpoints off.
    pub interval: Option<Duration>,
    /// `execution.checkpointing.dir` (or `state.checkpoints.dir`): a URL or directory.
    pub dir: Option<String>,
    pub mode: Option<CheckpointMode>,
    pub num_retained: Option<usize>,
    pub timeout: Option<Duration>,
    /// `execution.savepoint.path`: restore from this checkpoint directory.
    pub savepoint_path: Option<String>,
    /// `execution.savepoint.ignore-unclaimed-state`.
    pub ignore_unclaimed_state: Option<bool>,
    /// `pipeline.max-parallelism`: key groups of keyed state.
    pub max_parallelism: Option<u32>,
    pub restart: Option<RestartStrategy>,
    /// `restart-strategy.*` detail keys given before or without the type.
    restart_details: Vec<(String, String)>,
}

/// Every key this config takes, for listings and error messages.
pub const KEYS: &[&str] = &[
    "execution.checkpointing.interval",
    "execution.checkpointing.dir",
    "state.checkpoints.dir",
    "execution.checkpointing.mode",
    "execution.checkpointing.num-retained",
    "state.checkpoints.num-retained",
    "execution.checkpointing.timeout",
    "execution.savepoint.path",
    "execution.savepoint.ignore-unclaimed-state",
    "pipeline.max-parallelism",
    "restart-strategy.type",
    "restart-strategy.exponential-delay.initial-backoff",
    "restart-strategy.exponential-delay.max-backoff",
    "restart-strategy.exponential-delay.backoff-multiplier",
    "restart-strategy.exponential-delay.attempts-before-reset-backoff",
    "restart-strategy.exponential-delay.reset-backoff-threshold",
    "restart-strategy.fixed-delay.attempts",
    "restart-strategy.fixed-delay.delay",
];

impl CheckpointConfig {
    /// Whether `key` is one of this config's.
    pub fn handles(key: &str) -> bool {
        KEYS.contains(&key)
    }

    /// Applies one setting; the error says what value is expected.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        let duration = || {
            parse_duration(v)
                .ok_or_else(|| format!("'{key}' = '{value}' is not a duration such as '10 s'"))
        };
        let number = || {
            v.parse::<u64>()
                .map_err(|_| format!("'{key}' = '{value}' is not a whole number"))
        };
        match key {
            "execution.checkpointing.interval" => self.interval = Some(duration()?),
            "execution.checkpointing.dir" | "state.checkpoints.dir" => {
                if v.is_empty() {
                    return Err(format!("'{key}' must name a directory or URL"));
                }
                self.dir = Some(v.to_string());
            }
            "execution.checkpointing.mode" => {
                self.mode = Some(match v.to_ascii_uppercase().replace('-', "_").as_str() {
                    "EXACTLY_ONCE" => CheckpointMode::ExactlyOnce,
                    "AT_LEAST_ONCE" => CheckpointMode::AtLeastOnce,
                    _ => {
                        return Err(format!(
                            "'{key}' = '{value}': expected 'EXACTLY_ONCE' or 'AT_LEAST_ONCE'"
                        ));
                    }
                })
            }
            "execution.checkpointing.num-retained" | "state.checkpoints.num-retained" => {
                let n = number()?;
                if n == 0 {
                    return Err(format!("'{key}' must be at least 1"));
                }
                self.num_retained = Some(n as usize);
            }
            "execution.checkpointing.timeout" => self.timeout = Some(duration()?),
            "execution.savepoint.path" => self.savepoint_path = Some(v.to_string()),
            "execution.savepoint.ignore-unclaimed-state" => {
                self.ignore_unclaimed_state = Some(match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("'{key}' = '{value}' must be 'true' or 'false'")),
                })
            }
            "pipeline.max-parallelism" => {
                let n = number()?;
                if !(1..=32768).contains(&n) {
                    return Err(format!("'{key}' must be between 1 and 32768"));
                }
                self.max_parallelism = Some(n as u32);
            }
            "restart-strategy.type" => {
                self.restart = Some(match v.to_ascii_lowercase().as_str() {
                    "none" | "off" | "disable" => RestartStrategy::none(),
                    "exponential-delay" | "exponentialdelay" => {
                        RestartStrategy::exponential_delay()
                    }
                    "fixed-delay" | "fixeddelay" => RestartStrategy {
                        attempts: 1,
                        initial_backoff: Duration::from_secs(1),
                        max_backoff: Duration::from_secs(1),
                        multiplier: 1.0,
                        reset_after: Duration::MAX,
                    },
                    _ => {
                        return Err(format!(
                            "'{key}' = '{value}': expected 'exponential-delay', 'fixed-delay' or 'none'"
                        ));
                    }
                });
                let details = std::mem::take(&mut self.restart_details);
                for (k, v) in details {
                    self.set(&k, &v)?;
                }
                return Ok(());
            }
            k if k.starts_with("restart-strategy.") => {
                let kind = k.split('.').nth(1).unwrap_or_default();
                let Some(r) = self.restart.as_mut() else {
                    // The detail may come before the type, as in any Flink config.
                    duration_or_number(key, v)?;
                    self.restart_details.push((key.to_string(), v.to_string()));
                    return Ok(());
                };
                let fixed = r.multiplier == 1.0 && r.reset_after == Duration::MAX;
                if (kind == "fixed-delay") != fixed || r.attempts == 0 {
                    return Err(format!(
                        "'{key}' does not apply to the configured 'restart-strategy.type'"
                    ));
                }
                match k.rsplit('.').next().unwrap_or_default() {
                    "initial-backoff" => r.initial_backoff = duration()?,
                    "max-backoff" => r.max_backoff = duration()?,
                    "backoff-multiplier" => {
                        r.multiplier = v
                            .parse::<f64>()
                            .ok()
                            .filter(|m| *m >= 1.0)
                            .ok_or_else(|| format!("'{key}' must be a number ≥ 1"))?
                    }
                    "attempts-before-reset-backoff" | "attempts" => {
                        r.attempts = u32::try_from(number()?).unwrap_or(u32::MAX)
                    }
                    "reset-backoff-threshold" => r.reset_after = duration()?,
                    "delay" => {
                        r.initial_backoff = duration()?;
                        r.max_backoff = r.initial_backoff;
                    }
                    _ => return Err(format!("unknown setting '{key}'")),
                }
            }
            _ => return Err(format!("unknown setting '{key}'")),
        }
        Ok(())
    }

    /// `self` with every field `over` sets replaced by `over`'s.
    pub fn overlay(&self, over: &CheckpointConfig) -> CheckpointConfig {
        CheckpointConfig {
            interval: over.interval.or(self.interval),
            dir: over.dir.clone().or_else(|| self.dir.clone()),
            mode: over.mode.or(self.mode),
            num_retained: over.num_retained.or(self.num_retained),
            timeout: over.timeout.or(self.timeout),
            savepoint_path: over
                .savepoint_path
                .clone()
                .or_else(|| self.savepoint_path.clone()),
            ignore_unclaimed_state: over.ignore_unclaimed_state.or(self.ignore_unclaimed_state),
            max_parallelism: over.max_parallelism.or(self.max_parallelism),
            restart: over.restart.clone().or_else(|| self.restart.clone()),
            restart_details: Vec::new(),
        }
    }

    /// The checkpoint interval in force: as set (zero = off), else 10 s for a job that reads an
    /// unbounded source, else none (a bounded job reruns from the start).
    pub fn interval_for(&self, unbounded: bool) -> Option<Duration> {
        match self.interval {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None if unbounded => Some(Duration::from_secs(10)),
            None => None,
        }
    }

    pub fn mode(&self) -> CheckpointMode {
        self.mode.unwrap_or(CheckpointMode::ExactlyOnce)
    }

    /// Completed checkpoints kept (Flink's default: 1).
    pub fn num_retained(&self) -> usize {
        self.num_retained.unwrap_or(1)
    }

    /// A checkpoint not complete after this fails the job (Flink's default: 10 min).
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(600))
    }

    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism.unwrap_or(128)
    }

    /// The restart strategy: as set, else exponential-delay when checkpoints are on (there is
    /// state to restart from) and none when they are off — Flink's defaults.
    pub fn restart(&self, checkpointing: bool) -> RestartStrategy {
        match &self.restart {
            Some(r) => r.clone(),
            None if checkpointing => RestartStrategy::exponential_delay(),
            None => RestartStrategy::none(),
        }
    }
}

fn duration_or_number(key: &str, v: &str) -> Result<(), String> {
    if parse_duration(v).is_some() || v.parse::<f64>().is_ok() {
        Ok(())
    } else {
        Err(format!("'{key}' = '{v}' is not a duration or number"))
    }
}

/// Where checkpoints go when no directory is set: `<data dir>/checkpoints`.
pub fn default_checkpoint_dir() -> PathBuf {
    data_dir().join("checkpoints")
}

/// The user's Sluice data (checkpoints, the shell's history and jobs): `$XDG_DATA_HOME/sluice`,
/// else `~/.local/share/sluice`, else `./.sluice`.
pub fn data_dir() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        });
    match data {
        Some(d) => d.join("sluice"),
        None => PathBuf::from(".sluice"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_keys_are_typed_and_bad_values_rejected() {
        let mut c = CheckpointConfig::default();
        assert_eq!(c.interval_for(true), Some(Duration::from_secs(10)));
        assert_eq!(c.interval_for(false), None);
        c.set("execution.checkpointing.interval", "1 s").unwrap();
        c.set("state.checkpoints.dir", "s3://b/p").unwrap();
        c.set("execution.checkpointing.mode", "at_least_once")
            .unwrap();
        c.set("execution.checkpointing.num-retained", "3").unwrap();
        assert_eq!(c.interval_for(false), Some(Duration::from_secs(1)));
        assert_eq!(c.dir.as_deref(), Some("s3://b/p"));
        assert_eq!(c.mode(), CheckpointMode::AtLeastOnce);
        assert_eq!(c.num_retained(), 3);
        c.set("execution.checkpointing.interval", "0").unwrap();
        assert_eq!(c.interval_for(true), None, "0 turns checkpoints off");
        for (k, v) in [
            ("execution.checkpointing.interval", "often"),
            ("execution.checkpointing.mode", "twice"),
            ("execution.checkpointing.num-retained", "0"),
            ("restart-strategy.type", "failure-rate"),
        ] {
            assert!(c.set(k, v).is_err(), "{k} = {v}");
        }
    }

    #[test]
    fn restart_strategy_details_apply_whatever_their_order() {
        let mut c = CheckpointConfig::default();
        assert_eq!(c.restart(false), RestartStrategy::none());
        assert_eq!(c.restart(true), RestartStrategy::exponential_delay());
        c.set("restart-strategy.exponential-delay.max-backoff", "4 s")
            .unwrap();
        c.set("restart-strategy.type", "exponential-delay").unwrap();
        c.set("restart-strategy.exponential-delay.initial-backoff", "1 s")
            .unwrap();
        c.set(
            "restart-strategy.exponential-delay.attempts-before-reset-backoff",
            "3",
        )
        .unwrap();
        let r = c.restart(true);
        assert_eq!(r.attempts, 3);
        let waits: Vec<u128> = (1..=6).map(|a| r.backoff(a).as_millis()).collect();
        assert_eq!(waits, [1000, 1500, 2250, 3375, 4000, 4000]);
        assert!(
            c.set("restart-strategy.fixed-delay.attempts", "2").is_err(),
            "a fixed-delay key under exponential-delay"
        );
    }
}
