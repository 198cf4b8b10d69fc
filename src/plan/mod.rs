//! The dataflow graph of a job, as the planner builds it and the runtime runs it, and its
//! rendering for `sluice explain`.
//!
//! ```text
//! source (one task per scanned table) ──► pipeline (operators fused in one task) ──► sink
//!                                     └─► pipeline ──► sink        (a source feeds every INSERT that reads it)
//! ```

mod parallel;
mod workers;

pub use parallel::{
    Parallelism, STAGE_INPUT, Stages, operator_routes, plan_parallelism, plan_stages,
};

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use crate::connectors::kafka::RepartitionTopic;
use crate::connectors::{ConnectorConfig, ScanColumns};
use crate::operators::{Feed, Operators};
use crate::stream::{WatermarkCell, flink_type_name};

pub struct JobGraph {
    pub name: String,
    pub sources: Vec<SourceNode>,
    pub pipelines: Vec<PipelineNode>,
}

/// A table read once per job; its rows go to every pipeline that reads it.
pub struct SourceNode {
    pub table: String,
    pub connector: ConnectorConfig,
    /// What the connector produces: payload columns, then metadata columns.
    pub scan_schema: SchemaRef,
    /// What SQL sees: every declared column in order, computed ones included.
    pub row_schema: SchemaRef,
    /// One expression per row column over a scan batch; `None` when the row is the scan.
    pub row_exprs: Option<Vec<Arc<dyn PhysicalExpr>>>,
    pub watermark: Option<WatermarkNode>,
    /// After how long without data a split stops holding the watermark back.
    pub idle_timeout: Option<Duration>,
    pub columns: ScanColumns,
    /// Threads that decode its records (files: one per subtask of the job).
    pub parallelism: usize,
}

/// `WATERMARK FOR column AS expr`, compiled over the row schema.
pub struct WatermarkNode {
    /// The event-time column, by name and index into the row schema.
    pub column: String,
    pub column_index: usize,
    pub expr: Arc<dyn PhysicalExpr>,
    /// The expression as the user wrote it, for EXPLAIN.
    pub text: String,
}

/// One INSERT (or printed query): the operators between its source and its sinks. INSERTs of
/// the same query into several tables share one pipeline that writes each of them.
pub struct PipelineNode {
    pub name: String,
    /// The sources it reads (indices into [`JobGraph::sources`]): one, or two for a join of
    /// two tables.
    pub inputs: Vec<usize>,
    pub operators: Operators,
    pub sinks: Vec<SinkNode>,
    /// The pipeline's current watermark, read by CURRENT_WATERMARK in its expressions.
    pub watermark: WatermarkCell,
    /// Where late rows go (`'table.exec.late-rows' = 'side-output:<table>'`).
    pub side_output: Option<SinkNode>,
    /// Batches held and handed on together (`table.exec.mini-batch.*`); `None`: each as it comes.
    pub mini_batch: Option<MiniBatch>,
    /// How many subtasks run it, and how rows are spread over them.
    pub parallelism: Parallelism,
    /// For the second stage of a pipeline cut in two: the pipeline (its first stage) whose
    /// rows it reads, through an exchange by its own key.
    pub upstream: Option<usize>,
    /// For a first stage: the pipeline its rows go to, instead of sinks.
    pub downstream: Option<usize>,
    /// For a first stage of a worker's job: its rows go to this repartition topic instead,
    /// and the second stage reads them wherever their partition is owned.
    pub repartition: Option<RepartitionOutput>,
}

/// Where a first stage of a worker's job writes its rows.
#[derive(Debug, Clone)]
pub struct RepartitionOutput {
    pub topic: RepartitionTopic,
    /// Columns of the stage's rows whose hash chooses the partition.
    pub key: Vec<usize>,
    /// The stage may emit other rows after a restore than before: what it sends waits for the
    /// checkpoint holding it (when the job takes checkpoints).
    pub held: bool,
}

/// One running copy of a pipeline, with its stable id in checkpoints.
pub struct TaskId {
    pub pipeline: usize,
    pub subtask: usize,
    /// The pipeline's id, with `[k/n]` when it has several subtasks: a checkpoint restores
    /// each subtask's state into the same subtask.
    pub id: String,
}

/// Flink's mini-batch: a pipeline holds its input until `size` rows have come or
/// `allow_latency` has passed since the first, then its operators take them as one batch — so
/// an updating operator changes a busy key once per mini-batch, not once per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MiniBatch {
    pub allow_latency: Duration,
    pub size: usize,
}

impl PipelineNode {
    /// The inputs its operators read: its sources, or the first stage's rows
    /// ([`STAGE_INPUT`]).
    pub fn reads(&self) -> Vec<usize> {
        match self.upstream {
            Some(_) => vec![STAGE_INPUT],
            None => self.inputs.clone(),
        }
    }

    /// For a first stage writing a repartition topic: the id of its writer's state in
    /// checkpoints (the numbers of the rows it sent), for its task `task_id`.
    pub fn repartition_state_id(&self, task_id: &str) -> Option<String> {
        self.repartition
            .as_ref()
            .map(|_| format!("{task_id}/repartition"))
    }

    /// Stable ids of the operators that keep state (`None` for the others):
    /// `<pipeline id>/<kind>`, then `#2`, `#3` for the next operators of the same kind. Adding a
    /// filter or a projection changes no id.
    pub fn operator_ids(&self, pipeline_id: &str) -> Vec<Option<String>> {
        let mut seen: std::collections::HashMap<&str, usize> = Default::default();
        self.operators
            .iter()
            .map(|op| {
                let kind = op.state_kind()?;
                let n = seen.entry(kind).or_default();
                *n += 1;
                Some(if *n == 1 {
                    format!("{pipeline_id}/{kind}")
                } else {
                    format!("{pipeline_id}/{kind}#{n}")
                })
            })
            .collect()
    }
}

pub struct SinkNode {
    pub table: String,
    /// The columns the sink writes, as declared.
    pub schema: SchemaRef,
    pub connector: ConnectorConfig,
}

impl JobGraph {
    /// Each pipeline's name in checkpoints: the tables it writes (they stay while the query
    /// around them changes), `#2`, `#3` for further pipelines writing the same tables.
    pub fn pipeline_ids(&self) -> Vec<String> {
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        let mut ids: Vec<String> = self
            .pipelines
            .iter()
            .map(|p| {
                let tables: Vec<&str> = p.sinks.iter().map(|s| s.table.as_str()).collect();
                let base = tables.join(",");
                let n = seen.entry(base.clone()).or_default();
                *n += 1;
                if *n == 1 { base } else { format!("{base}#{n}") }
            })
            .collect();
        // A first stage is named after the pipeline it feeds: `top~1` for `top`'s (and a stage
        // before that, on a worker, `top~1~1`). Later stages first: they come after.
        for (i, p) in self.pipelines.iter().enumerate().rev() {
            if let Some(next) = p.downstream {
                ids[i] = format!("{}~1", ids[next]);
            }
        }
        ids
    }

    /// Every subtask of every pipeline, in order: what runs, and takes part in checkpoints.
    pub fn task_ids(&self) -> Vec<TaskId> {
        let mut tasks = Vec::new();
        for (pipeline, (p, id)) in self.pipelines.iter().zip(self.pipeline_ids()).enumerate() {
            let n = p.parallelism.total();
            for (subtask, k) in p.parallelism.running().into_iter().enumerate() {
                let id = if n == 1 {
                    id.clone()
                } else {
                    format!("{id}[{k}/{n}]")
                };
                tasks.push(TaskId {
                    pipeline,
                    subtask,
                    id,
                });
            }
        }
        tasks
    }

    /// True when the job only shows queries' results (bare `SELECT`s, whose rows the planner
    /// sends to standard output): it writes no table.
    pub fn only_queries(&self) -> bool {
        self.pipelines.iter().all(|p| {
            p.name.starts_with("SELECT (")
                && p.sinks.iter().all(
                    |s| matches!(&s.connector, ConnectorConfig::Print(c) if c.identifier.is_none()),
                )
        })
    }

    /// True when some source never ends by itself (Kafka without a bounded mode, an endless
    /// generator): such a job is checkpointed by default.
    pub fn is_unbounded(&self) -> bool {
        self.sources.iter().any(|s| !s.connector.is_bounded())
    }

    /// The graph as text: sources with connector, watermark and parallelism; each pipeline's
    /// operators; sinks.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Job `{}`", self.name);
        for (i, s) in self.sources.iter().enumerate() {
            let _ = writeln!(
                out,
                "\nSource #{i} `{}`  parallelism {}",
                s.table, s.parallelism
            );
            let _ = writeln!(out, "  connector: {}", s.connector.describe());
            let cols: Vec<String> = s
                .row_schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), flink_type_name(f.data_type())))
                .collect();
            let _ = writeln!(out, "  columns: {}", cols.join(", "));
            match &s.watermark {
                Some(w) => {
                    let _ = writeln!(out, "  watermark: FOR {} AS {}", w.column, w.text);
                }
                None => {
                    let _ = writeln!(out, "  watermark: none (no event time)");
                }
            }
            if let Some(cols) = &s.columns.decode {
                let names: Vec<&str> = cols
                    .iter()
                    .map(|&i| s.scan_schema.field(i).name().as_str())
                    .collect();
                let _ = writeln!(out, "  decodes only: {}", names.join(", "));
            }
            if let Some(idle) = s.idle_timeout {
                let _ = writeln!(out, "  idle timeout: {idle:?}");
            }
        }
        let ids = self.pipeline_ids();
        for (p, id) in self.pipelines.iter().zip(ids.iter().cloned()) {
            let _ = writeln!(
                out,
                "\nPipeline `{}`  parallelism {}",
                p.name,
                p.parallelism.total()
            );
            let spread = p.parallelism.subtasks() > 1;
            if let Some(up) = p.upstream {
                let mut line = format!("  ← stage `{}`", ids[up]);
                if let (Parallelism::Keyed { keys, .. }, true) = (&p.parallelism, spread) {
                    let before = &self.pipelines[up];
                    let columns = before
                        .operators
                        .get(before.operators.len() - 1)
                        .output_schema();
                    let names: Vec<&str> = keys[0]
                        .iter()
                        .map(|&c| columns.field(c).name().as_str())
                        .collect();
                    line.push_str(&format!(", rows spread by hash of {}", names.join(", ")));
                }
                let _ = writeln!(out, "{line}");
            }
            for (k, &s) in p.inputs.iter().enumerate() {
                let source = &self.sources[s];
                let mut line = format!("  ← source #{s} `{}`", source.table);
                if let (Parallelism::Keyed { keys, .. }, true) = (&p.parallelism, spread) {
                    let names: Vec<&str> = keys[k]
                        .iter()
                        .map(|&c| source.row_schema.field(c).name().as_str())
                        .collect();
                    line.push_str(&format!(", rows spread by hash of {}", names.join(", ")));
                }
                if let (Parallelism::Spread { .. }, true) = (&p.parallelism, spread) {
                    line.push_str(", batches to the subtasks in turn");
                }
                if let Parallelism::Partitions { owned, .. } = &p.parallelism {
                    let owned: Vec<String> = owned.iter().map(|k| k.to_string()).collect();
                    line.push_str(&format!(
                        ", one subtask per partition; this worker runs partitions {}",
                        owned.join(", ")
                    ));
                }
                let _ = writeln!(out, "{line}");
            }
            if let Parallelism::Single {
                reason: Some(reason),
            } = &p.parallelism
            {
                let _ = writeln!(out, "  one subtask: {reason}");
            }
            if let Some(m) = p.mini_batch {
                let _ = writeln!(
                    out,
                    "  mini-batch: up to {} rows or {:?}",
                    m.size, m.allow_latency
                );
            }
            // Branches (unions, joins) numbered, each operator saying what it reads when that
            // is not the line above.
            let branched = !p.operators.is_chain();
            for (i, (op, state)) in p.operators.iter().zip(p.operator_ids(&id)).enumerate() {
                let mut line = format!("  {}", op.describe());
                if branched {
                    line = format!("  #{} {}", i + 1, op.describe());
                    let feeds = p.operators.feeds(i);
                    let previous = (i > 0).then(|| [Feed::Operator(i - 1)]);
                    if previous.as_ref().is_none_or(|p| feeds != p) {
                        let names: Vec<String> = feeds
                            .iter()
                            .map(|f| match f {
                                Feed::Input(STAGE_INPUT) => "the stage before".to_string(),
                                Feed::Input(s) => format!("source #{s}"),
                                Feed::Operator(j) => format!("#{}", j + 1),
                            })
                            .collect();
                        line.push_str(&format!("  ← {}", names.join(", ")));
                    }
                }
                if let Some(state) = state {
                    line.push_str(&format!("  [state: {state}]"));
                }
                let _ = writeln!(out, "{line}");
            }
            if let Some(next) = p.downstream {
                let _ = writeln!(out, "  → stage `{}`", ids[next]);
            }
            for sink in &p.sinks {
                let _ = writeln!(
                    out,
                    "  → sink `{}`: {}",
                    sink.table,
                    sink.connector.describe()
                );
            }
        }
        out
    }
}
