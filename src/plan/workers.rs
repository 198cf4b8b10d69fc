//! A job shared by several worker processes (`'sluice.workers' = 'kafka-group'`), the Kafka
//! Streams way: the topic's partitions are the unit of work. Every pipeline runs as one subtask
//! per partition, fed by that partition alone, and each worker runs the subtasks of the
//! partitions the consumer group gave it. Nothing moves between workers, so this holds only for
//! state keyed by what the producer partitions by: the table's `key.fields`.

use super::{JobGraph, Parallelism, PipelineNode};
use crate::connectors::ConnectorConfig;
use crate::connectors::kafka::KafkaConfig;

impl JobGraph {
    /// The consumer group the workers of this job join.
    pub fn worker_group(&self) -> String {
        format!("sluice-{}", self.name)
    }

    /// What `sluice explain` says first about a job of several workers.
    pub fn explain_workers(&self) -> String {
        let table = self.sources.first().map_or("", |s| s.table.as_str());
        format!(
            "Workers: every process running this file is a worker of job `{}` (consumer group `{}`). A worker runs every pipeline as one subtask per partition of `{table}` it owns, fed by that partition alone; the parallelism below is that of one process running the whole job.\n\n",
            self.name,
            self.worker_group()
        )
    }

    /// Why the job cannot be shared by workers, if it cannot.
    pub fn worker_problem(&self) -> Option<String> {
        self.topic_for_workers()
            .and_then(|kafka| {
                self.pipelines
                    .iter()
                    .try_for_each(|p| self.check_for_workers(p, kafka))
            })
            .err()
    }

    /// The job as the worker owning `owned` of the topic's `partitions` runs it; why not, when
    /// some state would need rows of other partitions.
    pub fn for_worker(mut self, partitions: usize, owned: &[usize]) -> Result<JobGraph, String> {
        if let Some(problem) = self.worker_problem() {
            return Err(problem);
        }
        if let ConnectorConfig::Kafka(kafka) = &mut self.sources[0].connector {
            kafka.owned_partitions = Some(owned.iter().map(|&p| p as i32).collect());
        }
        for p in &mut self.pipelines {
            p.parallelism = Parallelism::Partitions {
                partitions,
                owned: owned.to_vec(),
            };
        }
        Ok(self)
    }

    /// The one Kafka topic the workers share.
    fn topic_for_workers(&self) -> Result<&KafkaConfig, String> {
        let [source] = self.sources.as_slice() else {
            return Err(format!(
                "a job of several workers reads one Kafka topic; this one reads {} tables",
                self.sources.len()
            ));
        };
        let ConnectorConfig::Kafka(kafka) = &source.connector else {
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
        Ok(kafka)
    }

    /// Whether `p`'s state is all keyed by the topic's key.
    fn check_for_workers(&self, p: &PipelineNode, kafka: &KafkaConfig) -> Result<(), String> {
        let source = &self.sources[0];
        let key: Vec<usize> = kafka
            .key_fields
            .iter()
            .filter_map(|k| source.row_schema.index_of(k).ok())
            .collect();
        let not_by_key = |what: String| {
            let declared = if kafka.key_fields.is_empty() {
                "none declared".to_string()
            } else {
                kafka.key_fields.join(", ")
            };
            format!(
                "pipeline `{}` {what}; the workers of a job keep state only by the columns its topic is partitioned by (`{}`'s 'key.fields': {declared}), since rows of other keys are read by other workers. Run it in one process (without 'sluice.workers').",
                p.name, source.table
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
        Ok(())
    }
}
