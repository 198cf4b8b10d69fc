//! Connectors: where rows come from and go to.
//!
//! A table's `WITH` options are read into a typed config when the table is created
//! ([`ConnectorConfig::from_table`]), so mistakes surface before anything runs. At run time the
//! config makes a [`Source`] (which turns bytes into scan batches and hands them to a
//! [`SourceOutput`]) or a [`Sink`] (which writes batches out).

pub mod blackhole;
pub mod clickhouse;
pub mod datagen;
pub mod filesystem;
pub mod fleet_sim;
pub mod kafka;
pub mod options;
pub mod print;

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;

use crate::plan::SinkNode;
use crate::runtime::{JobError, SourceEnd, SourceOutput};
use crate::sql::ast::CreateTable;
use crate::sql::catalog::{MetadataColumn, Table};
use crate::sql::error::{SourceText, SqlError};
use options::OptionReader;

/// Reads a table's input and hands it, as scan batches, to the [`SourceOutput`].
#[async_trait]
pub trait Source: Send {
    /// Runs until the input ends ([`SourceEnd::Exhausted`]) or the job stops.
    async fn run(self: Box<Self>, out: &mut SourceOutput) -> Result<SourceEnd, JobError>;
}

/// Writes a pipeline's output.
#[async_trait]
pub trait Sink: Send {
    /// Connects and checks the target before any row flows (a ClickHouse table's columns), so a
    /// mismatch fails the job at start. `writer` names this sink instance uniquely within the
    /// job's runs (job name and pipeline; deduplication tokens use it).
    async fn open(&mut self, _writer: &str) -> Result<(), JobError> {
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), JobError>;
    /// Makes everything written so far durable/visible (called periodically and at barriers).
    async fn flush(&mut self) -> Result<(), JobError>;
    /// Flushes and closes at the end of the job.
    async fn finish(&mut self) -> Result<(), JobError>;
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
}

const CONNECTORS: &str = "kafka, clickhouse, filesystem, datagen, fleet-sim, print, blackhole";

impl ConnectorConfig {
    /// Reads and validates the `WITH` options of a CREATE TABLE.
    pub fn from_table(
        src: &SourceText,
        def: &CreateTable,
        physical: &SchemaRef,
        metadata: &[MetadataColumn],
    ) -> Result<Self, SqlError> {
        let Some(name) = def
            .options
            .iter()
            .find(|o| o.key == "connector")
            .map(|o| o.value.clone())
        else {
            return Err(src.error(
                def.name_pos,
                format!(
                    "table `{}` has no 'connector' option; one of: {CONNECTORS}",
                    def.name
                ),
            ));
        };
        let opts = OptionReader::new(src, def, &name);
        let config = match name.as_str() {
            "filesystem" => ConnectorConfig::Filesystem(
                filesystem::FilesystemConfig::from_options(&opts, physical)?,
            ),
            "kafka" => {
                ConnectorConfig::Kafka(kafka::KafkaConfig::from_options(&opts, physical, metadata)?)
            }
            "datagen" => {
                ConnectorConfig::Datagen(datagen::DatagenConfig::from_options(&opts, physical)?)
            }
            "fleet-sim" => {
                ConnectorConfig::FleetSim(fleet_sim::FleetSimConfig::from_options(&opts, physical)?)
            }
            "print" => ConnectorConfig::Print(print::PrintConfig::from_options(&opts)?),
            "blackhole" => ConnectorConfig::Blackhole,
            "clickhouse" => {
                ConnectorConfig::ClickHouse(clickhouse::ClickHouseConfig::from_options(&opts)?)
            }
            other => {
                let pos = def
                    .options
                    .iter()
                    .find(|o| o.key == "connector")
                    .map_or(def.name_pos, |o| o.pos);
                return Err(src.error(
                    pos,
                    format!("unknown connector '{other}'; available: {CONNECTORS}"),
                ));
            }
        };
        if !metadata.is_empty() && !matches!(config, ConnectorConfig::Kafka(_)) {
            let col = &metadata[0];
            let pos = def
                .columns
                .iter()
                .find(|c| c.name == col.name)
                .map_or(def.name_pos, |c| c.pos);
            return Err(src.error(
                pos,
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
        }
    }

    pub fn can_write(&self) -> bool {
        !matches!(
            self,
            ConnectorConfig::Datagen(_) | ConnectorConfig::FleetSim(_)
        )
    }

    /// Why this table cannot be read, if it cannot (options only a source needs).
    pub fn source_problem(&self) -> Option<String> {
        match self {
            ConnectorConfig::Kafka(k) => k.source_problem(),
            ConnectorConfig::Print(_)
            | ConnectorConfig::Blackhole
            | ConnectorConfig::ClickHouse(_) => Some(format!(
                "connector '{}' can only be written to",
                self.name()
            )),
            _ => None,
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
        }
    }

    /// A reader for `table`; formats that can decode only `decode_columns` of the payload do.
    pub fn create_source(
        &self,
        table: &Table,
        decode_columns: Option<Vec<usize>>,
    ) -> Result<Box<dyn Source>, JobError> {
        Ok(match self {
            ConnectorConfig::Filesystem(c) => Box::new(filesystem::FileSource::new(
                c.clone(),
                table,
                decode_columns,
            )?),
            ConnectorConfig::Kafka(c) => {
                Box::new(kafka::KafkaSource::new(c.clone(), table, decode_columns)?)
            }
            ConnectorConfig::Datagen(c) => Box::new(datagen::DatagenSource::new(c.clone(), table)),
            ConnectorConfig::FleetSim(c) => {
                Box::new(fleet_sim::FleetSimSource::new(c.clone(), table)?)
            }
            ConnectorConfig::Print(_)
            | ConnectorConfig::Blackhole
            | ConnectorConfig::ClickHouse(_) => {
                return Err(JobError::source(
                    &table.name,
                    format!("connector '{}' cannot be read", self.name()),
                ));
            }
        })
    }

    pub fn create_sink(&self, node: &SinkNode) -> Result<Box<dyn Sink>, JobError> {
        Ok(match self {
            ConnectorConfig::Filesystem(c) => Box::new(filesystem::FileSink::new(c.clone(), node)?),
            ConnectorConfig::Kafka(c) => Box::new(kafka::KafkaSink::new(c.clone(), node)?),
            ConnectorConfig::Print(c) => Box::new(print::PrintSink::new(c.clone())),
            ConnectorConfig::Blackhole => Box::new(blackhole::BlackholeSink),
            ConnectorConfig::ClickHouse(c) => {
                Box::new(clickhouse::ClickHouseSink::new(c.clone(), node))
            }
            ConnectorConfig::Datagen(_) | ConnectorConfig::FleetSim(_) => {
                return Err(JobError::sink(
                    &node.table,
                    format!("connector '{}' cannot be written", self.name()),
                ));
            }
        })
    }
}
