//! Connectors: where rows come from and go to.
//!
//! A table's `WITH` options are read into a typed config when the table is created
//! ([`ConnectorConfig::from_table`]), so mistakes surface before anything runs. At run time the
//! config makes a [`Source`] (which turns bytes into scan batches and hands them to a
//! [`SourceOutput`]) or a [`Sink`] (which writes batches out).

pub mod blackhole;
pub mod clickhouse;
pub mod collect;
pub mod datagen;
pub mod filesystem;
pub mod fleet_sim;
pub mod kafka;
mod ordered_pool;
pub mod pacer;
pub mod print;

use std::time::Duration;

use arrow::datatypes::{DataType, SchemaRef};

use crate::formats::Format;
use crate::options::{OptionError, OptionReader};
use crate::stream::{JobError, Sink, Source};

/// A table as a connector sees it when it is declared: its name, `WITH` options and columns.
pub struct TableDecl<'a> {
    pub name: &'a str,
    /// `WITH` options as (key, value), in declared order.
    pub options: &'a [(String, String)],
    /// The payload columns.
    pub physical: &'a SchemaRef,
    /// Columns filled by the connector (`METADATA FROM`).
    pub metadata: &'a [MetadataColumn],
    /// `PRIMARY KEY (...) NOT ENFORCED` columns.
    pub primary_key: &'a [String],
}

/// A column filled by the connector, not the payload.
#[derive(Debug, Clone)]
pub struct MetadataColumn {
    pub name: String,
    /// The connector's key, e.g. `timestamp`, `partition`, `offset`.
    pub key: String,
    pub data_type: DataType,
    pub is_virtual: bool,
}

/// Which payload columns a source decodes, and which ones a record must have.
#[derive(Debug, Clone, Default)]
pub struct ScanColumns {
    /// Payload columns to decode (indices into the physical schema); the others are read as
    /// NULL because no pipeline uses them. `None` = all.
    pub decode: Option<Vec<usize>>,
    /// Payload columns a record is bad without (those behind the event-time column): a record
    /// where one is missing or NULL is skipped and counted, or fails the job, like any record
    /// that cannot be decoded.
    pub required: Vec<usize>,
}

/// The connector of a table with its options, validated.
#[derive(Debug, Clone)]
pub enum ConnectorConfig {
    Filesystem(filesystem::FilesystemConfig),
    Kafka(kafka::KafkaConfig),
    Datagen(datagen::DatagenConfig),
    FleetSim(fleet_sim::FleetSimConfig),
    Print(print::PrintConfig),
    Blackhole,
    ClickHouse(clickhouse::ClickHouseConfig),
    /// A query's rows to the process running it (the shell); never named in SQL.
    Collect(collect::CollectConfig),
    /// The rows a job's first stage repartitioned, read by its second on the worker owning
    /// their partition; never named in SQL.
    Repartition(kafka::RepartitionTopic),
}

/// The connectors a table may name.
pub const CONNECTORS: &[&str] = &[
    "kafka",
    "upsert-kafka",
    "clickhouse",
    "filesystem",
    "datagen",
    "fleet-sim",
    "print",
    "blackhole",
];

/// The `WITH` options `connector` takes, with their choices where there are few (for the
/// shell's completion): its own, its formats', and `connector` itself.
pub fn connector_options(connector: &str) -> Vec<(&'static str, &'static [&'static str])> {
    let own: &[(&str, &[&str])] = match connector {
        "kafka" | "upsert-kafka" => kafka::OPTIONS,
        "clickhouse" => clickhouse::OPTIONS,
        "filesystem" => filesystem::OPTIONS,
        "datagen" => datagen::OPTIONS,
        "fleet-sim" => fleet_sim::OPTIONS,
        "print" => print::OPTIONS,
        _ => &[],
    };
    let formats: &[(&str, &[&str])] = match connector {
        "kafka" | "upsert-kafka" | "filesystem" => crate::formats::OPTIONS,
        _ => &[],
    };
    let mut options = vec![("connector", CONNECTORS)];
    options.extend(own.iter().chain(formats).copied());
    options
}

impl ConnectorConfig {
    /// Reads and validates the `WITH` options of a declared table.
    pub fn from_table(table: &TableDecl) -> Result<Self, OptionError> {
        let (physical, metadata) = (table.physical, table.metadata);
        let Some(name) = table
            .options
            .iter()
            .find(|(k, _)| k == "connector")
            .map(|(_, v)| v.clone())
        else {
            return Err(OptionError::at_table(format!(
                "table `{}` has no 'connector' option; one of: {}",
                table.name,
                CONNECTORS.join(", ")
            )));
        };
        let opts = OptionReader::new(table.name, table.options, &name);
        let config = match name.as_str() {
            "filesystem" => ConnectorConfig::Filesystem(
                filesystem::FilesystemConfig::from_options(&opts, physical)?,
            ),
            "kafka" => ConnectorConfig::Kafka(kafka::KafkaConfig::from_options(
                &opts, physical, metadata, None,
            )?),
            "upsert-kafka" => ConnectorConfig::Kafka(kafka::KafkaConfig::from_options(
                &opts,
                physical,
                metadata,
                Some(table.primary_key),
            )?),
            "datagen" => {
                ConnectorConfig::Datagen(datagen::DatagenConfig::from_options(&opts, physical)?)
            }
            "fleet-sim" => {
                ConnectorConfig::FleetSim(fleet_sim::FleetSimConfig::from_options(&opts, physical)?)
            }
            "print" => ConnectorConfig::Print(print::PrintConfig::from_options(&opts)?),
            "blackhole" => ConnectorConfig::Blackhole,
            "clickhouse" => ConnectorConfig::ClickHouse(
                clickhouse::ClickHouseConfig::from_options(&opts, table.primary_key)?,
            ),
            other => {
                return Err(OptionError::at_option(
                    "connector",
                    format!(
                        "unknown connector '{other}'; available: {}",
                        CONNECTORS.join(", ")
                    ),
                ));
            }
        };
        if !metadata.is_empty() && !matches!(config, ConnectorConfig::Kafka(_)) {
            let col = &metadata[0];
            return Err(OptionError::at_column(
                &col.name,
                format!(
                    "connector '{name}' has no metadata columns (column `{}`)",
                    col.name
                ),
            ));
        }
        opts.finish()?;
        Ok(config)
    }

    /// Prints query results to standard output (a bare SELECT in `sluice run`).
    pub fn stdout() -> Self {
        ConnectorConfig::Print(print::PrintConfig::default())
    }

    pub fn name(&self) -> &'static str {
        match self {
            ConnectorConfig::Filesystem(_) => "filesystem",
            ConnectorConfig::Kafka(_) => "kafka",
            ConnectorConfig::Datagen(_) => "datagen",
            ConnectorConfig::FleetSim(_) => "fleet-sim",
            ConnectorConfig::Print(_) => "print",
            ConnectorConfig::Blackhole => "blackhole",
            ConnectorConfig::ClickHouse(_) => "clickhouse",
            ConnectorConfig::Collect(_) => "collect",
            ConnectorConfig::Repartition(_) => "repartition",
        }
    }

    /// Whether reading the table gives upserts and deletes by its PRIMARY KEY (`upsert-kafka`)
    /// rather than rows only added.
    pub fn reads_upserts(&self) -> bool {
        matches!(self, ConnectorConfig::Kafka(c) if c.upsert)
    }

    /// Whether reading the table gives a changelog as it is (`debezium-json`: every change
    /// with its old and new row).
    pub fn reads_changes(&self) -> bool {
        matches!(self, ConnectorConfig::Kafka(c) if c.debezium)
    }

    /// Whether the sink takes a changelog (rows updated and deleted later): it shows the row
    /// kinds, or has nothing to keep consistent.
    pub fn takes_changes(&self) -> bool {
        match self {
            ConnectorConfig::Print(_)
            | ConnectorConfig::Blackhole
            | ConnectorConfig::Collect(_) => true,
            // Upserts by the declared key.
            ConnectorConfig::ClickHouse(c) => !c.primary_key.is_empty(),
            ConnectorConfig::Kafka(c) => c.upsert || c.debezium,
            _ => false,
        }
    }

    pub fn can_write(&self) -> bool {
        !matches!(
            self,
            ConnectorConfig::Datagen(_)
                | ConnectorConfig::FleetSim(_)
                | ConnectorConfig::Repartition(_)
        )
    }

    /// True when the records carry the watermark (a repartition topic's, from each origin)
    /// instead of it being computed from the rows.
    pub fn carries_watermarks(&self) -> bool {
        matches!(self, ConnectorConfig::Repartition(_))
    }

    /// Why this table cannot be read, if it cannot (options only a source needs).
    pub fn source_problem(&self) -> Option<String> {
        match self {
            ConnectorConfig::Kafka(k) => k.source_problem(),
            ConnectorConfig::Print(_)
            | ConnectorConfig::Blackhole
            | ConnectorConfig::ClickHouse(_)
            | ConnectorConfig::Collect(_) => Some(format!(
                "connector '{}' can only be written to",
                self.name()
            )),
            _ => None,
        }
    }

    /// The format records are decoded with, for connectors that decode.
    pub fn format(&self) -> Option<&Format> {
        match self {
            ConnectorConfig::Filesystem(c) => Some(&c.format),
            ConnectorConfig::Kafka(c) => Some(&c.value_format),
            _ => None,
        }
    }

    /// True when its records decode on several threads, one per subtask (files).
    pub fn decodes_in_parallel(&self) -> bool {
        matches!(self, ConnectorConfig::Filesystem(_))
    }

    /// True when reading ends by itself: files, bounded Kafka reads, generators with a row
    /// count.
    pub fn is_bounded(&self) -> bool {
        match self {
            ConnectorConfig::Filesystem(_) => true,
            ConnectorConfig::Kafka(k) => k.bounded != kafka::BoundedMode::Unbounded,
            ConnectorConfig::Datagen(d) => d.number_of_rows.is_some(),
            ConnectorConfig::FleetSim(f) => f.number_of_rows.is_some(),
            ConnectorConfig::Repartition(r) => r.bounded,
            _ => true,
        }
    }

    /// `scan.watermark.idle-timeout` where the connector has it.
    pub fn idle_timeout(&self) -> Option<Duration> {
        match self {
            ConnectorConfig::Kafka(k) => k.idle_timeout,
            _ => None,
        }
    }

    /// One line for EXPLAIN and DESCRIBE.
    pub fn describe(&self) -> String {
        match self {
            ConnectorConfig::Filesystem(c) => c.describe(),
            ConnectorConfig::Kafka(c) => c.describe(),
            ConnectorConfig::Datagen(c) => c.describe(),
            ConnectorConfig::FleetSim(c) => c.describe(),
            ConnectorConfig::Print(c) => c.describe(),
            ConnectorConfig::Blackhole => "blackhole (discards rows)".to_string(),
            ConnectorConfig::ClickHouse(c) => c.describe(),
            ConnectorConfig::Collect(_) => "the shell's result view".to_string(),
            ConnectorConfig::Repartition(r) => r.describe(),
        }
    }

    /// A reader for `table`, whose batches have `scan_schema`; formats that can decode only
    /// some columns of the payload do.
    /// A reader of `table`; `parallelism` threads decode where the connector can (files,
    /// Kafka).
    pub fn create_source(
        &self,
        table: &str,
        scan_schema: &SchemaRef,
        columns: ScanColumns,
        parallelism: usize,
    ) -> Result<Box<dyn Source>, JobError> {
        Ok(match self {
            ConnectorConfig::Filesystem(c) => Box::new(filesystem::FileSource::new(
                c.clone(),
                table,
                columns,
                parallelism,
            )?),
            ConnectorConfig::Kafka(c) => Box::new(kafka::KafkaSource::new(
                c.clone(),
                table,
                scan_schema.clone(),
                columns,
                parallelism,
            )?),
            ConnectorConfig::Datagen(c) => Box::new(datagen::DatagenSource::new(c.clone())),
            ConnectorConfig::FleetSim(c) => Box::new(fleet_sim::FleetSimSource::new(c.clone())?),
            ConnectorConfig::Repartition(r) => {
                Box::new(kafka::RepartitionSource::new(r.clone(), table))
            }
            ConnectorConfig::Print(_)
            | ConnectorConfig::Blackhole
            | ConnectorConfig::ClickHouse(_)
            | ConnectorConfig::Collect(_) => {
                return Err(JobError::source(
                    table,
                    format!("connector '{}' cannot be read", self.name()),
                ));
            }
        })
    }

    /// A writer into `table`, whose rows have `schema` (the declared columns).
    pub fn create_sink(&self, table: &str, schema: &SchemaRef) -> Result<Box<dyn Sink>, JobError> {
        Ok(match self {
            ConnectorConfig::Filesystem(c) => {
                Box::new(filesystem::FileSink::new(c.clone(), table)?)
            }
            ConnectorConfig::Kafka(c) => Box::new(kafka::KafkaSink::new(c.clone(), table, schema)?),
            ConnectorConfig::Print(c) => Box::new(print::PrintSink::new(c.clone())),
            ConnectorConfig::Blackhole => Box::new(blackhole::BlackholeSink),
            ConnectorConfig::Collect(c) => Box::new(collect::CollectSink::new(c.clone())),
            ConnectorConfig::ClickHouse(c) => {
                Box::new(clickhouse::ClickHouseSink::new(c.clone(), table, schema))
            }
            ConnectorConfig::Datagen(_)
            | ConnectorConfig::FleetSim(_)
            | ConnectorConfig::Repartition(_) => {
                return Err(JobError::sink(
                    table,
                    format!("connector '{}' cannot be written", self.name()),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// Every option a connector's reader accepts is one the shell offers: an unknown option's
    /// error lists the reader's options, which must all be in `connector_options`.
    #[test]
    fn the_shell_offers_every_option_a_connector_reads() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "vehicle_id",
            DataType::Utf8,
            true,
        )]));
        let required: &[(&str, &[(&str, &str)])] = &[
            (
                "kafka",
                &[
                    ("topic", "t"),
                    ("properties.bootstrap.servers", "b:9092"),
                    ("format", "json"),
                ],
            ),
            ("clickhouse", &[("url", "http://c:8123"), ("table", "t")]),
            ("filesystem", &[("path", "/tmp/x"), ("format", "csv")]),
            ("datagen", &[]),
            ("fleet-sim", &[]),
            ("print", &[]),
        ];
        for (connector, given) in required {
            let mut options = vec![("connector".to_string(), connector.to_string())];
            options.extend(given.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            options.push(("no-such-option".to_string(), "x".to_string()));
            let err = ConnectorConfig::from_table(&TableDecl {
                name: "t",
                options: &options,
                physical: &schema,
                metadata: &[],
                primary_key: &[],
            })
            .err()
            .unwrap_or_else(|| panic!("{connector}: an unknown option was accepted"))
            .to_string();
            let listed = err
                .split("valid options: ")
                .nth(1)
                .unwrap_or_else(|| panic!("{connector}: {err}"));
            let offered: Vec<&str> = connector_options(connector).iter().map(|o| o.0).collect();
            for key in listed.split(", ").map(str::trim) {
                if key.ends_with('*') || key.starts_with("fields.") {
                    continue;
                }
                assert!(
                    offered.contains(&key),
                    "{connector}: '{key}' is read but not offered"
                );
            }
        }
    }
}
