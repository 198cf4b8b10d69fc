//! A job shared by several worker processes (`'sluice.workers' = 'kafka-group'`), the Kafka
//! Streams way: the topic's partitions are the unit of work. Every pipeline runs as one subtask
//! per partition, fed by that partition alone, and each worker runs the subtasks of the
//! partitions the consumer group gave it. Nothing moves between workers, so this holds only for
//! state keyed by what the producer partitions by: the table's `key.fields`.

use super::{JobGraph, Parallelism};
use crate::connectors::ConnectorConfig;

impl JobGraph {
    /// The job as the worker owning `owned` of the topic's `partitions` runs it; why not, when
    /// some state would need rows of other partitions.
    pub fn for_worker(mut self, partitions: usize, owned: &[usize]) -> Result<JobGraph, String> {
        let [source] = self.sources.as_mut_slice() else {
            return Err(format!(
                "a job of several workers reads one Kafka topic; this one reads {} tables",
                self.sources.len()
            ));
        };
        let ConnectorConfig::Kafka(kafka) = &mut source.connector else {
            return Err(format!(
                "a job of several workers reads a Kafka topic; `{}` is a {} table",
                source.table,
                source.connector.name()
            ));
        };
        if kafka.topics.len() != 1 || kafka.topic_pattern.is_some() {
            return Err(format!(
                "a job of several workers reads one topic; `{}` names several",
                source.table
            ));
        }
        kafka.owned_partitions = Some(owned.iter().map(|&p| p as i32).collect());
        let key: Vec<usize> = kafka
            .key_fields
            .iter()
            .filter_map(|k| source.row_schema.index_of(k).ok())
            .collect();
        let key_names = kafka.key_fields.join(", ");
        let table = source.table.clone();
        for p in &mut self.pipelines {
            let not_by_key = |what: String| {
                format!(
                    "pipeline `{}` {what}; a job of several workers keeps state only by the columns the topic is partitioned by (`{table}`'s 'key.fields'{}), because rows of other keys are read by other workers. Run it in one process (remove 'sluice.workers').",
                    p.name,
                    if key_names.is_empty() {
                        ": none declared".to_string()
                    } else {
                        format!(": {key_names}")
                    }
                )
            };
            if p.upstream.is_some() || p.downstream.is_some() {
                return Err(not_by_key(
                    "is keyed two ways (two stages with an exchange)".into(),
                ));
            }
            match &p.parallelism {
                Parallelism::Keyed { keys, .. } => {
                    if key.is_empty() || !key.iter().all(|k| keys[0].contains(k)) {
                        let names: Vec<&str> = keys[0]
                            .iter()
                            .map(|&c| source.row_schema.field(c).name().as_str())
                            .collect();
                        return Err(not_by_key(format!("keeps state by {}", names.join(", "))));
                    }
                }
                Parallelism::Spread { .. } => {
                    return Err(not_by_key("aggregates across keys in two phases".into()));
                }
                Parallelism::Single { .. } => {
                    if let Some(op) = p.operators.iter().find(|op| op.state_kind().is_some()) {
                        return Err(not_by_key(format!(
                            "keeps state of all its rows together (`{}`)",
                            op.describe()
                        )));
                    }
                    if let Some(op) = p.operators.first_without_instances() {
                        return Err(not_by_key(format!(
                            "has `{}`, which cannot run as subtasks yet",
                            op.describe()
                        )));
                    }
                }
                Parallelism::Partitions { .. } => {}
            }
            p.parallelism = Parallelism::Partitions {
                partitions,
                owned: owned.to_vec(),
            };
        }
        Ok(self)
    }
}
