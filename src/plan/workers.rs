//! A job shared by several worker processes (`'sluice.workers' = 'kafka-group'`), the Kafka
//! Streams way: the topic's partitions are the unit of work. Every pipeline runs as one subtask
//! per partition, fed by that partition alone, and each worker runs the subtasks of the
//! partitions the consumer group gave it. State keyed by what the producer partitions by (the
//! table's `key.fields`) needs no row to move. Several topics keyed alike are co-partitioned,
//! as in Kafka Streams: the group shares the first table's partitions, and the worker owning
//! partition `k` of it reads partition `k` of every other. A stage keyed by anything else gets
//! its rows through a repartition topic: a pipeline keyed by another key, the second stage of
//! one keyed two ways, all rows to one partition for state of all rows together.

use arrow::datatypes::{Schema, SchemaRef};

use super::{JobGraph, Parallelism, PipelineNode, RepartitionOutput, SourceNode};
use crate::connectors::kafka::{BoundedMode, KafkaConfig, PartitionShare, RepartitionTopic};
use crate::connectors::{ConnectorConfig, ScanColumns};
use crate::operators::Operators;
use crate::stream::new_watermark_cell;

impl JobGraph {
    /// The consumer group the workers of this job join.
    pub fn worker_group(&self) -> String {
        format!("sluice-{}", self.name)
    }

    /// What `sluice explain` says first about a job of several workers: how they share it,
    /// and which pipelines move rows between them.
    pub fn explain_workers(&self) -> String {
        let table = self.sources.first().map_or("", |s| s.table.as_str());
        let fed_by = if self.sources.len() > 1 {
            "that partition of each topic"
        } else {
            "that partition alone"
        };
        let mut out = format!(
            "Workers: every process running this file is a worker of job `{}` (consumer group `{}`). A worker runs every pipeline as one subtask per partition of `{table}` it owns, fed by {fed_by}; the parallelism below is that of one process running the whole job.\n",
            self.name,
            self.worker_group()
        );
        if let [_, others @ ..] = self.sources.as_slice()
            && !others.is_empty()
        {
            let names: Vec<String> = others.iter().map(|s| format!("`{}`", s.table)).collect();
            out.push_str(&format!(
                "Co-partitioned: {} with `{table}` (as many partitions, keyed alike by the same partitioner): partition k of each comes to the worker owning partition k of `{table}`.\n",
                names.join(", ")
            ));
        }
        let ids = self.pipeline_ids();
        // Each topic: the pipeline reading it, the key it is written by, over which columns,
        // and the first stage writing it when that one keeps state.
        let mut topics = Vec::new();
        // The rows of the table a pipeline that is not a second stage reads.
        let source_rows = |i: usize| self.sources[self.pipelines[i].inputs[0]].row_schema.clone();
        for (i, shape) in self
            .worker_shapes()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            match shape {
                WorkerShape::Repartitioned { key } => topics.push((i, key, source_rows(i), None)),
                WorkerShape::WritesTopic { key } => {
                    topics.push((i + 1, key, self.rows_handed_on(i), Some(i)));
                }
                WorkerShape::RepartitionedWritesTopic { key, next_key } => {
                    topics.push((i, key, source_rows(i), None));
                    topics.push((i + 1, next_key, self.rows_handed_on(i), Some(i)));
                }
                _ => {}
            }
        }
        for (reader, key, columns, writer) in topics {
            let names: Vec<&str> = key
                .iter()
                .map(|&c| columns.field(c).name().as_str())
                .collect();
            let topic = self.topic_read_by(&ids, reader);
            let name = &self.pipelines[reader].name;
            // A first stage that keeps state: its results move, not the source's rows.
            let held = match writer.map(|w| &self.pipelines[w]) {
                Some(first) if emits_otherwise_after_restore(first) => {
                    let what = match &first.parallelism {
                        Parallelism::Spread { .. } => {
                            "aggregates the rows of each source partition where they are (the local phase of two)".to_string()
                        }
                        _ => self.keeps_state_by(first),
                    };
                    format!(
                        " Its first stage {what}, and sends what it emits once the checkpoint holding it completes: a restore never sends other results than it sent."
                    )
                }
                _ => String::new(),
            };
            out.push_str(&if names.is_empty() {
                format!(
                    "Repartitioned: pipeline `{name}` keeps state of all its rows together: they all go through topic `{topic}` into its partition 0, and the worker owning partition 0 of `{table}` runs it.{held}\n"
                )
            } else {
                let names = names.join(", ");
                format!(
                    "Repartitioned: pipeline `{name}` keeps state by {names}, not by the topic's key: its rows go through topic `{topic}` (a partition per partition of `{table}`, by hash of {names}); the worker owning partition k of `{table}` runs partition k of it.{held}\n"
                )
            });
        }
        out.push('\n');
        out
    }

    /// Why the job cannot be shared by workers, if it cannot.
    pub fn worker_problem(&self) -> Option<String> {
        self.worker_shapes().err()
    }

    /// How each pipeline runs on the workers; why one cannot.
    fn worker_shapes(&self) -> Result<Vec<WorkerShape>, String> {
        self.group_topic()?;
        (0..self.pipelines.len())
            .map(|i| self.shape_on_workers(i))
            .collect()
    }

    /// The job as the worker owning `owned` of the topic's `partitions` runs it; why not, when
    /// some state cannot be placed. A pipeline keyed by another key than the topic's gets a
    /// first stage that writes its rows to a repartition topic, and reads that topic.
    pub fn for_worker(mut self, partitions: usize, owned: &[usize]) -> Result<JobGraph, String> {
        let shapes = self.worker_shapes()?;
        let kafka = self.group_topic()?;
        let group_topic = kafka.topics[0].clone();
        let properties = RepartitionTopic::connection_of(&kafka.properties);
        let bounded = kafka.bounded != BoundedMode::Unbounded;
        for source in &mut self.sources {
            if let ConnectorConfig::Kafka(kafka) = &mut source.connector {
                kafka.share = Some(PartitionShare {
                    partitions,
                    owned: owned.iter().map(|&p| p as i32).collect(),
                    group_topic: group_topic.clone(),
                });
            }
        }
        let topic_of = |name: String| RepartitionTopic {
            topic: name,
            partitions,
            properties: properties.clone(),
            run_id: String::new(),
            owned: owned.to_vec(),
            bounded,
        };
        let by_partition = || Parallelism::Partitions {
            partitions,
            owned: owned.to_vec(),
        };
        // The topic each pipeline would read, named before stages are added.
        let ids = self.pipeline_ids();
        let topics: Vec<String> = (0..self.pipelines.len())
            .map(|reader| self.topic_read_by(&ids, reader))
            .collect();
        let handed_on: Vec<SchemaRef> = (0..shapes.len()).map(|i| self.rows_handed_on(i)).collect();
        // Where each pipeline goes: a first stage is added before each one repartitioned.
        let mut moved_to = Vec::with_capacity(shapes.len());
        for shape in &shapes {
            let before = moved_to.last().map_or(0, |&m| m + 1);
            let added = matches!(
                shape,
                WorkerShape::Repartitioned { .. } | WorkerShape::RepartitionedWritesTopic { .. }
            ) as usize;
            moved_to.push(before + added);
        }
        let old = std::mem::take(&mut self.pipelines);
        for (i, (mut p, shape)) in old.into_iter().zip(shapes).enumerate() {
            let held = emits_otherwise_after_restore(&p);
            p.parallelism = by_partition();
            p.upstream = p.upstream.map(|u| moved_to[u]);
            p.downstream = p.downstream.map(|d| moved_to[d]);
            match shape {
                WorkerShape::ByPartition => {}
                // Its first stage came just before and added the topic last.
                WorkerShape::ReadsTopic => p.inputs = vec![self.sources.len() - 1],
                WorkerShape::WritesTopic { key } => {
                    let topic = topic_of(topics[i + 1].clone());
                    self.write_topic(&mut p, topic, key, handed_on[i].clone(), held);
                }
                WorkerShape::Repartitioned { key } => {
                    let topic = topic_of(topics[i].clone());
                    let name = format!("{} (stage 1)", p.name);
                    self.repartition_input(&mut p, name, topic, key);
                }
                WorkerShape::RepartitionedWritesTopic { key, next_key } => {
                    let topic = topic_of(topics[i].clone());
                    let base = p.name.strip_suffix(" (stage 1)").unwrap_or(&p.name);
                    let name = format!("{base} (stage 0)");
                    self.repartition_input(&mut p, name, topic, key);
                    let topic = topic_of(topics[i + 1].clone());
                    self.write_topic(&mut p, topic, next_key, handed_on[i].clone(), held);
                }
            }
            self.pipelines.push(p);
        }
        Ok(self)
    }

    /// First stage `p` sends its rows (with `columns`) to `topic` by `key`, and the second stage
    /// reads them there: the topic is added as the last source (see
    /// [`WorkerShape::ReadsTopic`]).
    fn write_topic(
        &mut self,
        p: &mut PipelineNode,
        topic: RepartitionTopic,
        key: Vec<usize>,
        columns: SchemaRef,
        held: bool,
    ) {
        self.sources.push(topic_source(topic.clone(), columns));
        p.repartition = Some(RepartitionOutput { topic, key, held });
    }

    /// `p` reads its source's rows through `topic`, where a stage added before it (`name`,
    /// run as `p` is) writes them by `key`.
    fn repartition_input(
        &mut self,
        p: &mut PipelineNode,
        name: String,
        topic: RepartitionTopic,
        key: Vec<usize>,
    ) {
        let columns = self.sources[p.inputs[0]].row_schema.clone();
        self.sources.push(topic_source(topic.clone(), columns));
        let first = self.pipelines.len();
        self.pipelines.push(PipelineNode {
            name,
            inputs: p.inputs.clone(),
            operators: Operators::reading(p.inputs[0]),
            sinks: Vec::new(),
            watermark: new_watermark_cell(),
            side_output: None,
            mini_batch: None,
            parallelism: p.parallelism.clone(),
            upstream: None,
            downstream: Some(first + 1),
            repartition: Some(RepartitionOutput {
                topic,
                key,
                held: false,
            }),
        });
        p.upstream = Some(first);
        p.inputs = vec![self.sources.len() - 1];
    }

    /// The name of the repartition topic pipeline `reader` (of the job as planned, with ids
    /// `ids`) reads: a first stage's is named after the pipeline it feeds.
    fn topic_read_by(&self, ids: &[String], reader: usize) -> String {
        let id = match self.pipelines[reader].downstream {
            Some(next) => first_stage_input(&ids[next]),
            None => ids[reader].clone(),
        };
        RepartitionTopic::name_for(&self.name, &id)
    }

    /// Where first stage `p` keeps its state, for EXPLAIN.
    fn keeps_state_by(&self, p: &PipelineNode) -> String {
        let Parallelism::Keyed { keys, .. } = &p.parallelism else {
            return "keeps state".into();
        };
        let source = &self.sources[p.inputs[0]];
        let names: Vec<&str> = keys[0]
            .iter()
            .map(|&c| source.row_schema.field(c).name().as_str())
            .collect();
        let names = names.join(", ");
        if self.keyed_by_topic_key(p) {
            format!("keeps state by {names}, the topic's key, where each source partition is")
        } else {
            format!("keeps state by {names}")
        }
    }

    /// The columns of the rows pipeline `i` hands on: its last operator's, or its source's.
    fn rows_handed_on(&self, i: usize) -> SchemaRef {
        let p = &self.pipelines[i];
        match p.operators.len() {
            0 => self.sources[p.inputs[0]].row_schema.clone(),
            n => p.operators.get(n - 1).output_schema(),
        }
    }

    /// Names the run of the job in its repartition topics' records (every worker's is the
    /// same, from the job's checkpoint directory).
    pub fn set_run_id(&mut self, run_id: &str) {
        for s in &mut self.sources {
            if let ConnectorConfig::Repartition(t) = &mut s.connector {
                t.run_id = run_id.to_string();
            }
        }
        for p in &mut self.pipelines {
            if let Some(out) = &mut p.repartition {
                out.topic.run_id = run_id.to_string();
            }
        }
    }

    /// The Kafka topic whose partitions the workers' consumer group shares: the first
    /// table's. Every table of the job reads one topic, co-partitioned with it.
    fn group_topic(&self) -> Result<&KafkaConfig, String> {
        let topics = self
            .sources
            .iter()
            .map(one_topic)
            .collect::<Result<Vec<_>, _>>()?;
        topics.first().copied().ok_or_else(|| {
            "a job of several workers reads a Kafka topic; this one reads no table".into()
        })
    }

    /// Whether `p`'s rows go to subtasks by keys that hold its topics' keys (their
    /// 'key.fields'), column for column in the same places for every input: then partition
    /// `k` of each topic holds every row of the keys of task `k`, and a worker's task fed by
    /// partition `k` of each has them all.
    fn keyed_by_topic_key(&self, p: &PipelineNode) -> bool {
        let Parallelism::Keyed { keys, .. } = &p.parallelism else {
            return false;
        };
        let mut placed: Option<Vec<usize>> = None;
        for (input_keys, &input) in keys.iter().zip(&p.inputs) {
            let source = &self.sources[input];
            let at: Option<Vec<usize>> = topic_key(&source.connector, &source.row_schema)
                .iter()
                .map(|c| input_keys.iter().position(|k| k == c))
                .collect();
            match at {
                Some(at) if !at.is_empty() && placed.as_ref().is_none_or(|p| *p == at) => {
                    placed = Some(at);
                }
                _ => return false,
            }
        }
        placed.is_some()
    }

    /// How pipeline `i` runs on the workers: by partition when its state is keyed by the
    /// topic's key (or it keeps none); through a repartition topic when it is keyed by another
    /// key. Why it cannot run on them at all.
    fn shape_on_workers(&self, i: usize) -> Result<WorkerShape, String> {
        let p = &self.pipelines[i];
        let refuse = |what: String| {
            format!(
                "pipeline `{}` {what}; the workers of a job keep state by the columns its topics are partitioned by (their 'key.fields'), or by a key the rows of one table are repartitioned by through a topic. Run it in one process (without 'sluice.workers').",
                p.name
            )
        };
        // Rows of several tables can only meet where their topics' partitions are.
        let joins_tables_otherwise =
            || refuse("joins several tables by other columns than their topics' keys".into());
        if let Some(next) = p.downstream {
            // The stage before another keyed differently sends its rows on by the next
            // stage's key, or all to one partition.
            let next_key = match &self.pipelines[next].parallelism {
                Parallelism::Keyed { keys, .. } => keys[0].clone(),
                Parallelism::Single { .. } => Vec::new(),
                _ => return Err(refuse("has stages no worker can run".into())),
            };
            // Stateless, keyed by the topic's key, or a local aggregation: where each
            // partition is. Keyed by another key: its rows come through a topic first.
            return match &p.parallelism {
                Parallelism::Keyed { keys, .. } if !self.keyed_by_topic_key(p) => {
                    if p.inputs.len() != 1 {
                        return Err(joins_tables_otherwise());
                    }
                    Ok(WorkerShape::RepartitionedWritesTopic {
                        key: keys[0].clone(),
                        next_key,
                    })
                }
                _ => Ok(WorkerShape::WritesTopic { key: next_key }),
            };
        }
        if p.upstream.is_some() {
            return Ok(WorkerShape::ReadsTopic);
        }
        match &p.parallelism {
            Parallelism::Keyed { keys, .. } => {
                if self.keyed_by_topic_key(p) {
                    Ok(WorkerShape::ByPartition)
                } else if p.inputs.len() == 1 && keys.len() == 1 {
                    Ok(WorkerShape::Repartitioned {
                        key: keys[0].clone(),
                    })
                } else {
                    Err(joins_tables_otherwise())
                }
            }
            // Only a first stage is spread, and it has a stage after it (above).
            Parallelism::Spread { .. } => {
                Err(refuse("is a local phase without its global one".into()))
            }
            Parallelism::Single { .. } => {
                if let Some(op) = p.operators.first_without_instances() {
                    return Err(refuse(format!(
                        "has `{}`, which cannot run as subtasks yet",
                        op.describe()
                    )));
                }
                // State of all rows together (a global aggregate, a Top-N over the whole
                // stream): every row goes to one partition of a repartition topic.
                if p.operators.keep_state() && p.inputs.len() == 1 {
                    return Ok(WorkerShape::Repartitioned { key: Vec::new() });
                }
                if p.operators.keep_state() {
                    return Err(refuse("joins several tables without a key".into()));
                }
                Ok(WorkerShape::ByPartition)
            }
            Parallelism::Partitions { .. } => Ok(WorkerShape::ByPartition),
        }
    }
}

/// The row columns a Kafka table's producer partitions by (its 'key.fields'); none for
/// another connector.
fn topic_key(connector: &ConnectorConfig, row_schema: &Schema) -> Vec<usize> {
    let ConnectorConfig::Kafka(kafka) = connector else {
        return Vec::new();
    };
    kafka
        .key_fields
        .iter()
        .filter_map(|k| row_schema.index_of(k).ok())
        .collect()
}

/// The one Kafka topic `source` reads; why a worker cannot read it otherwise.
fn one_topic(source: &SourceNode) -> Result<&KafkaConfig, String> {
    let ConnectorConfig::Kafka(kafka) = &source.connector else {
        return Err(format!(
            "a job of several workers reads Kafka topics; `{}` is a {} table",
            source.table,
            source.connector.name()
        ));
    };
    if kafka.topics.len() != 1 || kafka.topic_pattern.is_some() {
        return Err(format!(
            "a job of several workers reads one topic per table; `{}` names several",
            source.table
        ));
    }
    Ok(kafka)
}

/// Whether a first stage restored from a checkpoint may emit other rows than its first run
/// did for the same input. One that keeps state may: its watermark moves with the batches its
/// source happened to read, and decides which rows are late. So may a local aggregation phase
/// (one row per mini-batch). A stateless stage emits the same rows.
fn emits_otherwise_after_restore(p: &PipelineNode) -> bool {
    p.operators.keep_state() || matches!(p.parallelism, Parallelism::Spread { .. })
}

/// What names the topic into the first stage of pipeline `id` in its topic's name: the stage's
/// own id (`top~1`) would read `top_1`, a table's name.
fn first_stage_input(id: &str) -> String {
    format!("{id}.stage-1")
}

/// How one pipeline of a job runs on its workers.
enum WorkerShape {
    /// One subtask per partition, fed by that partition: its state is keyed by the topic's
    /// key, or it keeps none.
    ByPartition,
    /// Keyed by another key (columns of its source's rows): a first stage added before it
    /// writes its rows to a repartition topic by that key, and it reads them there.
    Repartitioned { key: Vec<usize> },
    /// A first stage of two, stateless, keyed by the topic's key or a local aggregation: writes
    /// its rows to a repartition topic by the second stage's key (columns of its own rows).
    WritesTopic { key: Vec<usize> },
    /// A first stage keyed by another key (columns of its source's rows): a stage added before
    /// it sends it its rows through a topic by `key`, and it writes its own to another by the
    /// second stage's `next_key`.
    RepartitionedWritesTopic {
        key: Vec<usize>,
        next_key: Vec<usize>,
    },
    /// The second of two stages: reads the repartition topic its first stage writes.
    ReadsTopic,
}

/// The source a second stage reads: a repartition topic's partitions that this worker owns,
/// whose rows have `schema` and whose records carry the watermark.
fn topic_source(topic: RepartitionTopic, schema: SchemaRef) -> SourceNode {
    SourceNode {
        table: topic.topic.clone(),
        connector: ConnectorConfig::Repartition(topic),
        scan_schema: schema.clone(),
        row_schema: schema,
        row_exprs: None,
        watermark: None,
        idle_timeout: None,
        columns: ScanColumns::default(),
        parallelism: 1,
    }
}
