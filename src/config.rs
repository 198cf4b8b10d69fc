//! `sluice.yaml`: runtime settings for a machine or deployment (the SQL file says *what* to
//! run, this says *how*). Read from `--config FILE`, else `./sluice.yaml` if present.
//!
//! ```yaml
//! runtime:
//!   batch_size: 8192        # rows per batch a source aims for
//!   linger_ms: 200          # longest a source waits to fill a batch
//!   channel_capacity: 8     # batches buffered between tasks (backpressure beyond)
//!   flush_interval_ms: 1000 # sinks flush at least this often
//!   idle_timeout_ms: 0      # default watermark idle timeout (0 = none)
//! settings:                 # Flink's checkpoint and restart keys; a SET in the file wins
//!   execution.checkpointing.interval: 10 s
//!   execution.checkpointing.dir: s3://bucket/checkpoints
//! ```

use std::path::Path;
use std::time::Duration;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::checkpoint::CheckpointConfig;
use crate::runtime::RuntimeOptions;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SluiceConfig {
    pub runtime: RuntimeSection,
    /// Flink configuration keys (checkpoints, restarts), as in a Flink config file.
    settings: BTreeMap<String, serde_yaml_ng::Value>,
    /// `settings`, typed.
    #[serde(skip)]
    pub checkpoint: CheckpointConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSection {
    pub batch_size: usize,
    pub linger_ms: u64,
    pub channel_capacity: usize,
    pub flush_interval_ms: u64,
    pub idle_timeout_ms: u64,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        let d = RuntimeOptions::default();
        RuntimeSection {
            batch_size: d.batch_size,
            linger_ms: d.linger.as_millis() as u64,
            channel_capacity: d.channel_capacity,
            flush_interval_ms: d.flush_interval.as_millis() as u64,
            idle_timeout_ms: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: runtime.{field} must be greater than 0")]
    Zero { path: String, field: &'static str },
    #[error("{path}: settings: {message}")]
    Setting { path: String, message: String },
}

impl SluiceConfig {
    /// Loads `explicit`, or `./sluice.yaml` when it exists, or the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let default_path = Path::new("sluice.yaml");
        let path = match explicit {
            Some(p) => p,
            None if default_path.exists() => default_path,
            None => return Ok(SluiceConfig::default()),
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let mut config: SluiceConfig =
            serde_yaml_ng::from_str(text).map_err(|source| ConfigError::Parse {
                path: path.to_string(),
                source,
            })?;
        let r = &config.runtime;
        for (field, v) in [
            ("batch_size", r.batch_size),
            ("channel_capacity", r.channel_capacity),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero {
                    path: path.to_string(),
                    field,
                });
            }
        }
        for (key, text) in config.settings() {
            let key = &key;
            let unknown = !CheckpointConfig::handles(key);
            let result = if unknown {
                Err(format!(
                    "unknown key '{key}'; sluice.yaml takes the checkpoint and restart keys {}",
                    crate::checkpoint::KEYS.join(", ")
                ))
            } else {
                config.checkpoint.set(key, &text)
            };
            result.map_err(|message| ConfigError::Setting {
                path: path.to_string(),
                message,
            })?;
        }
        Ok(config)
    }

    /// The `settings:` section as text, as `SET` would give them.
    pub fn settings(&self) -> Vec<(String, String)> {
        let text = |value: &serde_yaml_ng::Value| match value {
            serde_yaml_ng::Value::String(s) => s.clone(),
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            serde_yaml_ng::Value::Bool(b) => b.to_string(),
            other => format!("{other:?}"),
        };
        let settings = self.settings.iter();
        settings.map(|(k, v)| (k.clone(), text(v))).collect()
    }

    pub fn runtime_options(&self) -> RuntimeOptions {
        let r = &self.runtime;
        RuntimeOptions {
            batch_size: r.batch_size,
            linger: Duration::from_millis(r.linger_ms),
            channel_capacity: r.channel_capacity,
            flush_interval: Duration::from_millis(r.flush_interval_ms.max(1)),
            idle_timeout: (r.idle_timeout_ms > 0).then(|| Duration::from_millis(r.idle_timeout_ms)),
            drain_on_stop: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_runtime_section_and_rejects_typos() {
        let c = SluiceConfig::parse("runtime:\n  batch_size: 1000\n  linger_ms: 50\n", "s.yaml")
            .unwrap();
        let o = c.runtime_options();
        assert_eq!((o.batch_size, o.linger), (1000, Duration::from_millis(50)));
        let err = SluiceConfig::parse("runtime:\n  batchsize: 1\n", "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("batchsize"), "{err}");
        assert!(SluiceConfig::parse("runtime:\n  batch_size: 0\n", "s.yaml").is_err());
    }

    #[test]
    fn reads_flink_checkpoint_keys() {
        let c = SluiceConfig::parse(
            "settings:\n  execution.checkpointing.interval: 5 s\n  execution.checkpointing.num-retained: 2\n",
            "s.yaml",
        )
        .unwrap();
        assert_eq!(c.checkpoint.interval, Some(Duration::from_secs(5)));
        assert_eq!(c.checkpoint.num_retained(), 2);
        let err = SluiceConfig::parse("settings:\n  state.backend: rocksdb\n", "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("state.backend"), "{err}");
    }
}
