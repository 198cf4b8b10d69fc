//! The job being assembled: its sources (a table read once however many INSERTs scan it), its
//! pipelines, and what each source must decode; built into the [`JobGraph`] the runtime runs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::connectors::ScanColumns;
use crate::operators::Operators;
use crate::plan::{
    JobGraph, MiniBatch, Parallelism, PipelineNode, SinkNode, SourceNode, WatermarkNode,
    plan_parallelism, plan_stages,
};
use crate::sql::catalog::Table;
use crate::stream::WatermarkCell;

pub(super) struct PendingPipeline {
    pub(super) name: String,
    pub(super) operators: Operators,
    pub(super) sinks: Vec<SinkNode>,
    pub(super) watermark: WatermarkCell,
    pub(super) side_output: Option<SinkNode>,
    /// The optimized query, as text: an INSERT of the same query joins this pipeline.
    pub(super) query: Option<String>,
    /// What makes its rows a changelog, if something does.
    pub(super) updating: Option<String>,
}

/// Collects the sources and pipelines of one job; a table scanned by several INSERTs is read once.
#[derive(Default)]
pub(super) struct JobBuilder {
    pub(super) sources: Vec<Arc<Table>>,
    /// Row columns of each source that some pipeline reads.
    pub(super) used_columns: Vec<std::collections::BTreeSet<usize>>,
    pub(super) pipelines: Vec<PendingPipeline>,
    /// The watermark cell of the pipeline being compiled, for CURRENT_WATERMARK.
    pub(super) watermark: WatermarkCell,
}

impl JobBuilder {
    pub(super) fn source_for(&mut self, table: &Arc<Table>) -> usize {
        if let Some(i) = self.sources.iter().position(|t| t.name == table.name) {
            return i;
        }
        self.sources.push(table.clone());
        self.used_columns.push(Default::default());
        self.sources.len() - 1
    }

    /// The payload columns a source must decode: those behind the row columns read by some
    /// pipeline, its watermark and its computed columns, plus every NOT NULL one. `None` = all.
    pub(super) fn decode_columns(
        table: &Table,
        used: &std::collections::BTreeSet<usize>,
    ) -> Option<Vec<usize>> {
        use datafusion::physical_expr::utils::collect_columns;
        let mut rows: std::collections::BTreeSet<usize> = used.clone();
        if let Some(w) = &table.watermark {
            rows.extend(collect_columns(&w.expr).iter().map(|c| c.index()));
        }
        // An upsert table's rows are told apart by their key, read or not.
        if table.connector.reads_upserts() {
            rows.extend(
                table
                    .def
                    .primary_key
                    .iter()
                    .filter_map(|k| table.row_schema.index_of(k).ok()),
            );
        }
        let physical = table.physical_schema.fields().len();
        let mut decode: std::collections::BTreeSet<usize> = rows
            .iter()
            .flat_map(|&r| {
                collect_columns(&table.row_exprs[r])
                    .into_iter()
                    .map(|c| c.index())
            })
            .filter(|&i| i < physical)
            .collect();
        decode.extend(
            table
                .physical_schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.is_nullable())
                .map(|(i, _)| i),
        );
        (decode.len() < physical).then(|| decode.into_iter().collect())
    }

    /// Payload columns behind the event-time column: a record without them is bad.
    pub(super) fn required_columns(table: &Table) -> Vec<usize> {
        use datafusion::physical_expr::utils::collect_columns;
        let Some(w) = &table.watermark else {
            return Vec::new();
        };
        let physical = table.physical_schema.fields().len();
        let mut required: Vec<usize> = collect_columns(&table.row_exprs[w.column_index])
            .iter()
            .map(|c| c.index())
            .filter(|&i| i < physical)
            .collect();
        required.sort_unstable();
        required.dedup();
        required
    }

    pub(super) fn source_node(
        table: &Table,
        used: &BTreeSet<usize>,
        idle: Option<Duration>,
        parallelism: usize,
    ) -> SourceNode {
        SourceNode {
            table: table.name.clone(),
            connector: table.connector.clone(),
            scan_schema: table.scan_schema.clone(),
            row_schema: table.row_schema.clone(),
            row_exprs: (!table.row_is_scan()).then(|| table.row_exprs.clone()),
            watermark: table.watermark.as_ref().map(|w| WatermarkNode {
                column: w.column.clone(),
                column_index: w.column_index,
                expr: w.expr.clone(),
                text: w.text.clone(),
            }),
            idle_timeout: table.connector.idle_timeout().or(idle),
            columns: ScanColumns {
                decode: Self::decode_columns(table, used),
                required: Self::required_columns(table),
            },
            parallelism: if table.connector.decodes_in_parallel() {
                parallelism
            } else {
                1
            },
        }
    }

    /// The job, if the script has anything to run; `idle_timeout` is the default of every
    /// source without its own; every pipeline takes `mini_batch`, and runs as up to
    /// `parallelism` subtasks; window aggregates without a key run in two phases when
    /// `two_phase`. The workers of a job run the same stages, with rows moving between them
    /// through repartition topics.
    pub(super) fn build(
        self,
        name: String,
        idle_timeout: Option<Duration>,
        mini_batch: Option<MiniBatch>,
        parallelism: usize,
        two_phase: bool,
    ) -> Option<JobGraph> {
        if self.pipelines.is_empty() {
            return None;
        }
        Some(JobGraph {
            name,
            sources: self
                .sources
                .into_iter()
                .zip(&self.used_columns)
                .map(|(table, used)| Self::source_node(&table, used, idle_timeout, parallelism))
                .collect(),
            pipelines: self.pipelines.into_iter().fold(Vec::new(), |mut nodes, p| {
                let inputs = p.operators.inputs();
                // The shape (keyed or not, stages) is the same at every parallelism, so a
                // checkpoint's ids mean the same when it is restored at another.
                let shape = parallelism.max(2);
                let at = |planned: Parallelism| match planned {
                    Parallelism::Keyed { keys, .. } => Parallelism::Keyed {
                        subtasks: parallelism,
                        keys,
                    },
                    Parallelism::Single { reason } => Parallelism::Single {
                        reason: reason.filter(|_| parallelism > 1),
                    },
                    Parallelism::Spread { .. } => Parallelism::Spread {
                        subtasks: parallelism,
                    },
                    // Only a worker's job has them, made from this one.
                    partitions @ Parallelism::Partitions { .. } => partitions,
                };
                let planned = plan_parallelism(&p.operators, &inputs, shape);
                // Keyed differently along the way: two stages with an exchange between.
                let stages = match &planned {
                    Parallelism::Single { reason: Some(_) } if p.side_output.is_none() => {
                        let batched = mini_batch.is_some();
                        plan_stages(
                            &p.operators,
                            &inputs,
                            shape,
                            &p.watermark,
                            two_phase,
                            batched,
                        )
                    }
                    _ => None,
                };
                let planned = at(planned);
                let node = |operators, parallelism, inputs, sinks| PipelineNode {
                    name: p.name.clone(),
                    parallelism,
                    inputs,
                    operators,
                    sinks,
                    watermark: p.watermark.clone(),
                    side_output: None,
                    mini_batch,
                    upstream: None,
                    downstream: None,
                    repartition: None,
                };
                match stages {
                    Some(s) => {
                        let first = nodes.len();
                        nodes.push(PipelineNode {
                            name: format!("{} (stage 1)", p.name),
                            downstream: Some(first + 1),
                            ..node(s.first, at(s.first_parallelism), inputs, Vec::new())
                        });
                        nodes.push(PipelineNode {
                            name: format!("{} (stage 2)", p.name),
                            upstream: Some(first),
                            ..node(s.second, at(s.second_parallelism), Vec::new(), p.sinks)
                        });
                    }
                    None => nodes.push(PipelineNode {
                        side_output: p.side_output,
                        ..node(p.operators, planned, inputs, p.sinks)
                    }),
                }
                nodes
            }),
        })
    }
}

pub(super) fn job_name(file: &str) -> String {
    std::path::Path::new(file)
        .file_stem()
        .map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned())
}
