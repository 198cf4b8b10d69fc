//! Kafka table options (Flink's names).

use std::time::Duration;

use arrow::datatypes::{DataType, SchemaRef};
use rdkafka::ClientConfig;

use crate::connectors::MetadataColumn;
use crate::formats::Format;
use crate::options::OptionError;
use crate::options::OptionReader;

#[derive(Debug, Clone)]
pub enum StartupMode {
    Earliest,
    Latest,
    /// Committed offsets of the group; partitions without one start per `auto.offset.reset`.
    GroupOffsets,
    Timestamp(i64),
    /// `partition:0,offset:42;partition:1,offset:300`; unlisted partitions start at the committed
    /// offset.
    SpecificOffsets(Vec<(i32, i64)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundedMode {
    Unbounded,
    /// Stop at the end offsets of the partitions as they were when the job started.
    LatestOffset,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub topics: Vec<String>,
    pub topic_pattern: Option<String>,
    /// `properties.*` passed to librdkafka as given.
    pub properties: Vec<(String, String)>,
    pub startup: StartupMode,
    pub bounded: BoundedMode,
    pub idle_timeout: Option<Duration>,
    pub value_format: Format,
    pub key_format: Option<Format>,
    pub key_fields: Vec<String>,
    pub physical_schema: SchemaRef,
    pub metadata: Vec<MetadataColumn>,
    pub at_least_once: bool,
    /// `upsert-kafka`: a changelog written by key (the PRIMARY KEY), a delete as a tombstone.
    pub upsert: bool,
    /// `format = 'debezium-json'`: each row in Debezium's envelope, `"op"` saying whether it
    /// is added (`c`) or taken back (`d`), its values as the JSON format writes them.
    pub debezium: bool,
    /// The partitions this process reads, when it is one of several workers of the job (a
    /// worker's share, from the consumer group); `None`: every partition.
    pub share: Option<PartitionShare>,
}

/// A worker's share of a topic: `owned` of its `partitions`. Every topic of a job of workers
/// has as many partitions as the one its group shares (they are co-partitioned), so that
/// partition `k` of each comes to the same worker.
#[derive(Debug, Clone)]
pub struct PartitionShare {
    pub partitions: usize,
    pub owned: Vec<i32>,
    /// The topic whose partitions the group shares, for messages.
    pub group_topic: String,
}

const METADATA_KEYS: &[&str] = &["topic", "partition", "offset", "timestamp", "key"];

/// The options `from_options` reads, with their choices (for the shell's completion).
pub const OPTIONS: &[(&str, &[&str])] = &[
    ("topic", &[]),
    ("topic-pattern", &[]),
    ("properties.bootstrap.servers", &[]),
    ("properties.group.id", &[]),
    ("format", VALUE_FORMATS),
    ("value.format", VALUE_FORMATS),
    (
        "debezium-json.timestamp-format.standard",
        crate::formats::TIMESTAMP_STANDARDS,
    ),
    ("key.format", crate::formats::NAMES),
    ("key.fields", &[]),
    ("value.fields-include", &["ALL"]),
    ("scan.startup.mode", STARTUP_MODES),
    ("scan.startup.specific-offsets", &[]),
    ("scan.startup.timestamp-millis", &[]),
    ("scan.bounded.mode", BOUNDED_MODES),
    ("scan.watermark.idle-timeout", &[]),
    ("sink.delivery-guarantee", GUARANTEES),
];

/// The formats of a Kafka value: the formats, and Debezium's changelog envelope.
const VALUE_FORMATS: &[&str] = &["json", "csv", "raw", "debezium-json"];
const STARTUP_MODES: &[&str] = &[
    "group-offsets",
    "earliest-offset",
    "latest-offset",
    "timestamp",
    "specific-offsets",
];
const BOUNDED_MODES: &[&str] = &["unbounded", "latest-offset"];
const GUARANTEES: &[&str] = &["at-least-once", "none"];

impl KafkaConfig {
    /// `kafka`, or `upsert-kafka` when `upsert_key` is given (its PRIMARY KEY).
    pub fn from_options(
        opts: &OptionReader,
        physical: &SchemaRef,
        metadata: &[MetadataColumn],
        upsert_key: Option<&[String]>,
    ) -> Result<Self, OptionError> {
        let topics: Vec<String> = opts
            .optional("topic")
            .map(|t| {
                t.split(';')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let topic_pattern = opts.optional("topic-pattern");
        if topics.is_empty() == topic_pattern.is_none() {
            return Err(opts.error(
                "topic",
                "kafka needs exactly one of 'topic' or 'topic-pattern'",
            ));
        }
        if let Some(p) = &topic_pattern {
            regex::Regex::new(p).map_err(|e| {
                opts.error(
                    "topic-pattern",
                    format!("'topic-pattern' is not a valid regex: {e}"),
                )
            })?;
        }
        opts.required("properties.bootstrap.servers")?;
        let properties = opts.prefixed("properties.");

        let mode = opts.choice_or("scan.startup.mode", STARTUP_MODES, "group-offsets")?;
        let startup = match mode.as_str() {
            "earliest-offset" => StartupMode::Earliest,
            "latest-offset" => StartupMode::Latest,
            "timestamp" => StartupMode::Timestamp(
                opts.parse_opt("scan.startup.timestamp-millis", "epoch milliseconds")?
                    .ok_or_else(|| {
                        opts.error(
                            "scan.startup.mode",
                            "scan.startup.mode 'timestamp' needs 'scan.startup.timestamp-millis'",
                        )
                    })?,
            ),
            "specific-offsets" => {
                let text = opts
                    .optional("scan.startup.specific-offsets")
                    .ok_or_else(|| opts.error("scan.startup.mode", "scan.startup.mode 'specific-offsets' needs 'scan.startup.specific-offsets'"))?;
                StartupMode::SpecificOffsets(parse_specific_offsets(&text).ok_or_else(|| {
                    opts.error("scan.startup.specific-offsets", format!("'{text}' is not of the form 'partition:0,offset:42;partition:1,offset:300'"))
                })?)
            }
            _ => StartupMode::GroupOffsets,
        };
        let bounded = match opts
            .choice_or("scan.bounded.mode", BOUNDED_MODES, "unbounded")?
            .as_str()
        {
            "latest-offset" => BoundedMode::LatestOffset,
            _ => BoundedMode::Unbounded,
        };
        let idle_timeout = opts.duration_opt("scan.watermark.idle-timeout")?;

        let format_key = if opts.optional("value.format").is_some() {
            "value.format"
        } else {
            "format"
        };
        if format_key == "format" {
            opts.required("format")?;
        }
        let debezium = opts
            .optional(format_key)
            .is_some_and(|f| f.eq_ignore_ascii_case("debezium-json"));
        let value_format = if debezium {
            opts.allow(format_key);
            let standard = opts.choice_or(
                "debezium-json.timestamp-format.standard",
                crate::formats::TIMESTAMP_STANDARDS,
                "SQL",
            )?;
            Format::Json(crate::formats::JsonOptions {
                ignore_parse_errors: false,
                fail_on_missing_field: false,
                iso_timestamps: standard == "ISO-8601",
            })
        } else {
            Format::from_options(opts, format_key)?
        };
        let key_fields: Vec<String> = match upsert_key {
            Some([]) => {
                return Err(OptionError::at_table(
                    "upsert-kafka needs a PRIMARY KEY (...) NOT ENFORCED: its messages are keyed by it",
                ));
            }
            Some(_) if opts.optional("key.fields").is_some() => {
                return Err(opts.error(
                    "key.fields",
                    "upsert-kafka takes its key from the PRIMARY KEY, not 'key.fields'",
                ));
            }
            Some(pk) => pk.to_vec(),
            None => opts
                .optional("key.fields")
                .map(|f| {
                    f.split(';')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        };
        for k in &key_fields {
            if physical.field_with_name(k).is_err() {
                return Err(opts.error(
                    "key.fields",
                    format!("key field `{k}` is not a physical column of the table"),
                ));
            }
        }
        let key_format = match opts.optional("key.format") {
            None if key_fields.is_empty() => None,
            None => {
                return Err(opts.error(
                    "key.fields",
                    "'key.fields' needs 'key.format' ('json' or 'raw')",
                ));
            }
            Some(_) => {
                if key_fields.is_empty() {
                    return Err(opts.error("key.format", "'key.format' needs 'key.fields'"));
                }
                Some(Format::from_options(opts, "key.format")?)
            }
        };
        opts.choice_or("value.fields-include", &["ALL"], "ALL")?;
        if opts
            .optional("sink.delivery-guarantee")
            .is_some_and(|g| g.eq_ignore_ascii_case("exactly-once"))
        {
            return Err(opts.error(
                "sink.delivery-guarantee",
                "'sink.delivery-guarantee' = 'exactly-once' (Kafka transactions) is not supported yet: the Kafka sink is at-least-once, flushed at every checkpoint; use 'at-least-once'",
            ));
        }
        let guarantee = opts.choice_or("sink.delivery-guarantee", GUARANTEES, "at-least-once")?;

        for m in metadata {
            if !METADATA_KEYS.contains(&m.key.as_str()) {
                return Err(opts.error(
                    "connector",
                    format!(
                        "kafka has no metadata '{}' (column `{}`); available: {}",
                        m.key,
                        m.name,
                        METADATA_KEYS.join(", ")
                    ),
                ));
            }
            let ok = match m.key.as_str() {
                "topic" => matches!(m.data_type, DataType::Utf8),
                "partition" => m.data_type.is_integer(),
                "offset" => matches!(m.data_type, DataType::Int64),
                "timestamp" => matches!(m.data_type, DataType::Timestamp(..)),
                _ => matches!(m.data_type, DataType::Binary | DataType::Utf8),
            };
            if !ok {
                return Err(opts.error(
                    "connector",
                    format!(
                        "metadata column `{}` FROM '{}' has an unsuitable type {}",
                        m.name, m.key, m.data_type
                    ),
                ));
            }
        }
        Ok(KafkaConfig {
            topics,
            topic_pattern,
            properties,
            startup,
            bounded,
            idle_timeout,
            value_format,
            key_format,
            key_fields,
            physical_schema: physical.clone(),
            metadata: metadata.to_vec(),
            at_least_once: guarantee == "at-least-once",
            upsert: upsert_key.is_some(),
            debezium,
            share: None,
        })
    }

    pub fn describe(&self) -> String {
        let topic = self
            .topic_pattern
            .as_ref()
            .map_or_else(|| self.topics.join(";"), |p| format!("/{p}/"));
        let servers = self.property("bootstrap.servers").unwrap_or_default();
        format!(
            "{} topic={topic} brokers={servers} format={} partitions=all",
            if self.upsert { "upsert-kafka" } else { "kafka" },
            self.value_format.name()
        )
    }

    /// What keeps this table from being read, checked when a query scans it.
    pub fn source_problem(&self) -> Option<String> {
        if matches!(self.startup, StartupMode::GroupOffsets) && self.property("group.id").is_none()
        {
            return Some(
                "scan.startup.mode 'group-offsets' (the default) needs 'properties.group.id'"
                    .into(),
            );
        }
        None
    }

    pub fn property(&self, key: &str) -> Option<String> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

fn parse_specific_offsets(text: &str) -> Option<Vec<(i32, i64)>> {
    text.split(';')
        .filter(|s| !s.trim().is_empty())
        .map(|entry| {
            let mut partition = None;
            let mut offset = None;
            for kv in entry.split(',') {
                let (k, v) = kv.split_once(':')?;
                match k.trim() {
                    "partition" => partition = v.trim().parse().ok(),
                    "offset" => offset = v.trim().parse().ok(),
                    _ => return None,
                }
            }
            Some((partition?, offset?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flink_specific_offsets() {
        assert_eq!(
            parse_specific_offsets("partition:0,offset:42;partition:1,offset:300"),
            Some(vec![(0, 42), (1, 300)])
        );
        assert_eq!(parse_specific_offsets("partition:0"), None);
    }
}
