//! Matching a checkpoint to the job about to run: state goes where its stable id points.
//!
//! Sources by table name, pipelines by the tables they write, operators by
//! `<pipeline>/<kind>[#n]`, sinks by `<pipeline>/<table>`. An operator restores only into one
//! that computes the same (same `explain` line): a changed window size or aggregate cannot take
//! the old state. Connector options (brokers, bounded mode, startup mode) are free to change,
//! and so are filters, projections and anything stateless. State that finds no home is listed
//! by id; the job refuses to start unless told to drop it (`--allow-non-restored-state`, Flink's
//! flag) — staged sink rows among it would be lost.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::rescale::spread;
use crate::checkpoint::manifest::{OperatorState, PipelineState, SinkState, SplitWatermarks};
use crate::checkpoint::{Checkpoint, Positions};
use crate::plan::{JobGraph, Parallelism};
use crate::stream::JobError;
use crate::stream::ipc::decode_batches;

/// A checkpoint's state, laid out by the job's sources, pipelines, operators and sinks.
pub struct RestorePlan {
    pub epoch: u64,
    pub run_id: String,
    pub location: String,
    /// Per job source.
    pub sources: Vec<RestoredSource>,
    /// Per job pipeline.
    pub pipelines: Vec<PipelineRestore>,
    /// Ids of the state left behind (only with `allow_non_restored`).
    pub dropped: Vec<String>,
}

/// Where a source stood at the checkpoint.
#[derive(Default)]
pub struct RestoredSource {
    pub positions: Positions,
    pub watermarks: SplitWatermarks,
}

#[derive(Default)]
pub struct PipelineRestore {
    pub watermark: Option<i64>,
    /// Per operator (`None`: starts empty).
    pub operators: Vec<Option<Vec<u8>>>,
    /// Staged epochs per sink id, to be written again.
    pub sinks: HashMap<String, Vec<(u64, Vec<RecordBatch>)>>,
    /// Staged epochs of subtasks of another parallelism, to be written again under their ids.
    pub moved_sinks: Vec<MovedSink>,
    /// A first stage writing a repartition topic: the numbers of the next rows it sends.
    pub repartition: Option<Vec<u8>>,
}

/// Rows a subtask that no longer exists staged for a sink.
pub struct MovedSink {
    /// Its id then (`tumble[1/2]/out`): names its writes, so none is stored twice.
    pub id: String,
    pub table: String,
    /// A late-row side output.
    pub late: bool,
    pub epochs: Vec<(u64, Vec<RecordBatch>)>,
}

/// The id of sink `table` of pipeline `pipeline`; `late` for a late-row side output.
pub fn sink_id(pipeline: &str, table: &str, late: bool) -> String {
    if late {
        format!("{pipeline}/late:{table}")
    } else {
        format!("{pipeline}/{table}")
    }
}

/// Lays `checkpoint` out over `job`, whose keyed state is divided into `key_groups`; fails
/// listing every piece of state that would be left behind, unless `allow_non_restored`.
pub fn match_checkpoint(
    job: &JobGraph,
    checkpoint: &Checkpoint,
    key_groups: u32,
    allow_non_restored: bool,
) -> Result<RestorePlan, JobError> {
    let m = &checkpoint.manifest;
    let refuse = |why: String| {
        JobError::Checkpoint(format!(
            "cannot restore {} {} from {}: {why}",
            m.kind.as_str(),
            m.epoch,
            checkpoint.location
        ))
    };
    let sources = job
        .sources
        .iter()
        .map(|s| {
            m.sources
                .iter()
                .find(|c| c.table == s.table)
                .map(|c| RestoredSource {
                    positions: c.positions.clone(),
                    watermarks: c.watermarks.clone(),
                })
                .unwrap_or_default()
        })
        .collect();

    // State is restored per task: each subtask of a parallel pipeline has its own.
    let tasks = job.task_ids();
    let mut layout = Layout::default();
    let mut pipelines: Vec<PipelineRestore> = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.iter().enumerate() {
        let p = &job.pipelines[task.pipeline];
        for (j, op_id) in p.operator_ids(&task.id).into_iter().enumerate() {
            if let Some(op_id) = op_id {
                layout
                    .operators
                    .insert(op_id, (i, j, p.operators.get(j).describe()));
            }
        }
        if let Some(id) = p.repartition_state_id(&task.id) {
            layout.repartitions.insert(id, i);
        }
        for s in &p.sinks {
            layout
                .sinks
                .insert(sink_id(&task.id, &s.table, false), (i, s.schema.clone()));
        }
        if let Some(s) = &p.side_output {
            layout
                .sinks
                .insert(sink_id(&task.id, &s.table, true), (i, s.schema.clone()));
        }
        pipelines.push(PipelineRestore {
            watermark: None,
            operators: vec![None; p.operators.len()],
            ..Default::default()
        });
    }

    // Pipelines checkpointed at another parallelism: their subtasks' state is spread anew.
    let ids = job.pipeline_ids();
    let mut rescaled: HashMap<usize, Vec<(usize, &PipelineState)>> = HashMap::new();
    for state in &m.pipelines {
        let (base, subtask, of) = task_of(&state.id);
        let Some(p) = ids.iter().position(|id| id == base) else {
            continue;
        };
        if of != job.pipelines[p].parallelism.total() {
            rescaled.entry(p).or_default().push((subtask, state));
        }
    }
    // A worker's tasks are the topic's partitions: they take state of the same partition only.
    if let Some((&p, old)) = rescaled
        .iter()
        .find(|&(&p, _)| matches!(job.pipelines[p].parallelism, Parallelism::Partitions { .. }))
    {
        let of = task_of(&old[0].1.id).2;
        return Err(refuse(format!(
            "pipeline `{}` ran as {of} subtasks and its topic has {} partitions now; a job of several workers keeps one task per partition, so its state cannot be restored (start over with a new pipeline.name or an empty checkpoint directory)",
            job.pipelines[p].name,
            job.pipelines[p].parallelism.total()
        )));
    }
    let keyed = |p: usize| job.pipelines[p].operators.keep_state();
    if m.max_parallelism != key_groups
        && job.pipelines.iter().enumerate().any(|(p, node)| {
            keyed(p) && (node.parallelism.subtasks() > 1 || rescaled.contains_key(&p))
        })
    {
        return Err(refuse(format!(
            "its keyed state is divided into {} key groups and pipeline.max-parallelism is {key_groups} now; set it back to {} to restore it, or start with --fresh",
            m.max_parallelism, m.max_parallelism
        )));
    }

    let mut left_behind: Vec<String> = Vec::new();
    // The others go back into the subtasks of the same ids.
    let same_parallelism = |state: &PipelineState| {
        let base = task_of(&state.id).0;
        ids.iter()
            .position(|id| id == base)
            .is_none_or(|p| !rescaled.contains_key(&p))
    };
    for p in m.pipelines.iter().filter(|p| same_parallelism(p)) {
        if let Some(i) = tasks.iter().position(|t| t.id == p.id) {
            pipelines[i].watermark = Some(p.watermark);
        }
        for op in &p.operators {
            if let Some(&i) = layout.repartitions.get(&op.id) {
                pipelines[i].repartition = Some(checkpoint.blob(op.blob).to_vec());
                continue;
            }
            match layout.operators.get(&op.id) {
                Some((i, j, describe)) if *describe == op.describe => {
                    pipelines[*i].operators[*j] = Some(checkpoint.blob(op.blob).to_vec());
                }
                _ => left_behind.push(layout.not_placed(op)),
            }
        }
        for s in p.sinks.iter().filter(|s| !s.epochs.is_empty()) {
            match layout.sinks.get(&s.id) {
                Some((i, schema)) => match staged(checkpoint, s, schema)? {
                    Ok(epochs) => {
                        pipelines[*i].sinks.insert(s.id.clone(), epochs);
                    }
                    Err(e) => left_behind.push(e),
                },
                None => left_behind.push(format!(
                    "{} rows staged for sink `{}` ({}), which is not in the job any more",
                    rows(s),
                    s.table,
                    s.id
                )),
            }
        }
    }
    for (p, mut old) in rescaled {
        old.sort_by_key(|(k, _)| *k);
        let first = tasks
            .iter()
            .position(|t| t.pipeline == p)
            .expect("every pipeline has a task");
        let spread = Spread {
            job,
            checkpoint,
            pipeline: p,
            old: &old,
            first_task: first,
            key_groups,
        };
        spread.place(&mut pipelines, &mut left_behind)?;
    }
    if !left_behind.is_empty() && !allow_non_restored {
        return Err(refuse(format!(
            "the query changed and this state has no place in it:\n  - {}\nRun with --allow-non-restored-state to drop it (operators start empty), or --fresh to start over.",
            left_behind.join("\n  - ")
        )));
    }
    Ok(RestorePlan {
        epoch: m.epoch,
        run_id: m.run_id.clone(),
        location: checkpoint.location.clone(),
        sources,
        pipelines,
        dropped: left_behind,
    })
}

/// Where each operator id and sink id of the job is: (task, operator, what it computes) and
/// (task, columns).
#[derive(Default)]
struct Layout {
    operators: HashMap<String, (usize, usize, String)>,
    sinks: HashMap<String, (usize, SchemaRef)>,
    /// Repartition writers' state ids, by task.
    repartitions: HashMap<String, usize>,
}

impl Layout {
    /// Why operator state `op` finds no place in the job.
    fn not_placed(&self, op: &OperatorState) -> String {
        match self.operators.get(&op.id) {
            Some((_, _, describe)) => format!(
                "operator `{}` changed: it was `{}`, it is now `{describe}`",
                op.id, op.describe
            ),
            None => format!(
                "operator `{}` (`{}`) is not in the query any more",
                op.id, op.describe
            ),
        }
    }
}

/// A pipeline's state checkpointed by `old` subtasks (with their index), spread over its
/// subtasks now: each takes the keys it owns.
struct Spread<'a> {
    job: &'a JobGraph,
    checkpoint: &'a Checkpoint,
    pipeline: usize,
    old: &'a [(usize, &'a PipelineState)],
    /// The index of the pipeline's first subtask among the job's tasks.
    first_task: usize,
    key_groups: u32,
}

impl Spread<'_> {
    fn place(
        &self,
        pipelines: &mut [PipelineRestore],
        left_behind: &mut Vec<String>,
    ) -> Result<(), JobError> {
        let node = &self.job.pipelines[self.pipeline];
        let subtasks = node.parallelism.subtasks();
        if self.old.iter().enumerate().any(|(i, (k, _))| i != *k) {
            return Err(JobError::Checkpoint(format!(
                "the checkpoint lacks some of the {} subtasks of pipeline `{}`",
                self.old.len(),
                node.name
            )));
        }
        let watermark = self.old.iter().map(|(_, s)| s.watermark).min();
        // The id of each keyed operator below its task's id: `/window-aggregate`.
        let suffixes = node.operator_ids("");
        let old_id = |state: &PipelineState, suffix: &str| format!("{}{suffix}", state.id);
        // Operator states that no operator of the pipeline computes any more.
        for (_, state) in self.old {
            for op in &state.operators {
                let suffix = op.id.strip_prefix(&state.id);
                let now = suffixes.iter().position(|s| s.as_deref() == suffix);
                match now.map(|j| node.operators.get(j).describe()) {
                    Some(describe) if describe == op.describe => {}
                    Some(describe) => left_behind.push(format!(
                        "operator `{}` changed: it was `{}`, it is now `{describe}`",
                        op.id, op.describe
                    )),
                    None => left_behind.push(format!(
                        "operator `{}` (`{}`) is not in the query any more",
                        op.id, op.describe
                    )),
                }
            }
        }
        // Each old subtask's state per operator, where the operator computes the same.
        let old: Vec<Vec<Option<&[u8]>>> = self
            .old
            .iter()
            .map(|(_, state)| {
                suffixes
                    .iter()
                    .enumerate()
                    .map(|(j, suffix)| {
                        let id = old_id(state, suffix.as_ref()?);
                        let op = state.operators.iter().find(|op| op.id == id)?;
                        (op.describe == node.operators.get(j).describe())
                            .then(|| self.checkpoint.blob(op.blob))
                    })
                    .collect()
            })
            .collect();
        let spread = spread(node, &node.parallelism, &old, self.key_groups)?;
        for (task, states) in pipelines[self.first_task..].iter_mut().zip(spread) {
            task.operators = states;
        }
        for task in &mut pipelines[self.first_task..self.first_task + subtasks] {
            task.watermark = watermark;
        }
        // Rows staged by the old subtasks are written again under their old names (so what
        // was stored already is not stored twice), by the first subtask.
        for (_, state) in self.old {
            for s in state.sinks.iter().filter(|s| !s.epochs.is_empty()) {
                let late = s.id.contains("/late:");
                let sink = if late {
                    node.side_output.as_ref().filter(|o| o.table == s.table)
                } else {
                    node.sinks.iter().find(|o| o.table == s.table)
                };
                let Some(sink) = sink else {
                    left_behind.push(format!(
                        "{} rows staged for sink `{}` ({}), which is not in the job any more",
                        rows(s),
                        s.table,
                        s.id
                    ));
                    continue;
                };
                match staged(self.checkpoint, s, &sink.schema)? {
                    Ok(epochs) => pipelines[self.first_task].moved_sinks.push(MovedSink {
                        id: s.id.clone(),
                        table: s.table.clone(),
                        late,
                        epochs,
                    }),
                    Err(e) => left_behind.push(e),
                }
            }
        }
        Ok(())
    }
}

/// A pipeline state's id split into the pipeline's id and its subtask: `tumble[1/2]` is
/// subtask 1 of 2 of `tumble`; `tumble` is the one task of `tumble`.
fn task_of(id: &str) -> (&str, usize, usize) {
    let parsed = id.strip_suffix(']').and_then(|rest| {
        let (base, index) = rest.rsplit_once('[')?;
        let (k, n) = index.split_once('/')?;
        Some((base, k.parse().ok()?, n.parse().ok()?))
    });
    parsed.unwrap_or((id, 0, 1))
}

fn rows(s: &SinkState) -> u64 {
    s.epochs.iter().map(|e| e.rows).sum()
}

/// A sink's staged epochs, decoded; `Err` with the reason when they no longer fit `schema`.
#[allow(clippy::type_complexity)]
fn staged(
    checkpoint: &Checkpoint,
    s: &SinkState,
    schema: &SchemaRef,
) -> Result<Result<Vec<(u64, Vec<RecordBatch>)>, String>, JobError> {
    let mut epochs = Vec::with_capacity(s.epochs.len());
    for e in &s.epochs {
        let batches = decode_batches(checkpoint.blob(e.blob))?;
        if !batches.iter().all(|b| same_types(b, schema)) {
            return Ok(Err(format!(
                "{} rows staged for sink `{}` no longer fit its columns",
                rows(s),
                s.table
            )));
        }
        epochs.push((e.epoch, batches));
    }
    Ok(Ok(epochs))
}

fn same_types(batch: &RecordBatch, schema: &SchemaRef) -> bool {
    batch.num_columns() == schema.fields().len()
        && batch
            .schema()
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.data_type() == b.data_type())
}
