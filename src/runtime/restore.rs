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

use super::coordinator::decode_batches;
use crate::checkpoint::{Checkpoint, Positions};
use crate::plan::JobGraph;
use crate::stream::JobError;

/// A checkpoint's state, laid out by the job's sources, pipelines, operators and sinks.
pub struct RestorePlan {
    pub epoch: u64,
    pub run_id: String,
    pub location: String,
    /// Per job source.
    pub sources: Vec<Positions>,
    /// Per job pipeline.
    pub pipelines: Vec<PipelineRestore>,
    /// Ids of the state left behind (only with `allow_non_restored`).
    pub dropped: Vec<String>,
}

#[derive(Default)]
pub struct PipelineRestore {
    pub watermark: Option<i64>,
    /// Per operator (`None`: starts empty).
    pub operators: Vec<Option<Vec<u8>>>,
    /// Staged epochs per sink id, to be written again.
    pub sinks: HashMap<String, Vec<(u64, Vec<RecordBatch>)>>,
}

/// The id of sink `table` of pipeline `pipeline`; `late` for a late-row side output.
pub fn sink_id(pipeline: &str, table: &str, late: bool) -> String {
    if late {
        format!("{pipeline}/late:{table}")
    } else {
        format!("{pipeline}/{table}")
    }
}

/// Lays `checkpoint` out over `job`; fails listing every piece of state that would be left
/// behind, unless `allow_non_restored`.
pub fn match_checkpoint(
    job: &JobGraph,
    checkpoint: &Checkpoint,
    allow_non_restored: bool,
) -> Result<RestorePlan, JobError> {
    let m = &checkpoint.manifest;
    let sources = job
        .sources
        .iter()
        .map(|s| {
            m.sources
                .iter()
                .find(|c| c.table == s.table)
                .map(|c| c.positions.clone())
                .unwrap_or_default()
        })
        .collect();

    // State is restored per task: each subtask of a parallel pipeline has its own.
    let tasks = job.task_ids();
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    let mut pipelines: Vec<PipelineRestore> = Vec::with_capacity(tasks.len());
    // Where each operator id and sink id of the job is: (task, operator) and (task, schema).
    let mut operators: HashMap<String, (usize, usize, String)> = HashMap::new();
    let mut sinks: HashMap<String, (usize, arrow::datatypes::SchemaRef)> = HashMap::new();
    for (i, task) in tasks.iter().enumerate() {
        let p = &job.pipelines[task.pipeline];
        for (j, op_id) in p.operator_ids(&task.id).into_iter().enumerate() {
            if let Some(op_id) = op_id {
                operators.insert(op_id, (i, j, p.operators.get(j).describe()));
            }
        }
        for s in &p.sinks {
            sinks.insert(sink_id(&task.id, &s.table, false), (i, s.schema.clone()));
        }
        if let Some(s) = &p.side_output {
            sinks.insert(sink_id(&task.id, &s.table, true), (i, s.schema.clone()));
        }
        pipelines.push(PipelineRestore {
            watermark: None,
            operators: vec![None; p.operators.len()],
            sinks: HashMap::new(),
        });
    }
    if let Some(e) = parallelism_changed(job, m) {
        return Err(JobError::Checkpoint(format!(
            "cannot restore {} {} from {}: {e}",
            m.kind.as_str(),
            m.epoch,
            checkpoint.location
        )));
    }

    let mut left_behind: Vec<String> = Vec::new();
    for p in &m.pipelines {
        if let Some(i) = ids.iter().position(|id| *id == p.id) {
            pipelines[i].watermark = Some(p.watermark);
        }
        for op in &p.operators {
            match operators.get(&op.id) {
                Some((i, j, describe)) if *describe == op.describe => {
                    pipelines[*i].operators[*j] = Some(checkpoint.blob(op.blob).to_vec());
                }
                Some((_, _, describe)) => left_behind.push(format!(
                    "operator `{}` changed: it was `{}`, it is now `{describe}`",
                    op.id, op.describe
                )),
                None => left_behind.push(format!(
                    "operator `{}` (`{}`) is not in the query any more",
                    op.id, op.describe
                )),
            }
        }
        for s in p.sinks.iter().filter(|s| !s.epochs.is_empty()) {
            let rows: u64 = s.epochs.iter().map(|e| e.rows).sum();
            let Some((i, schema)) = sinks.get(&s.id) else {
                left_behind.push(format!(
                    "{rows} rows staged for sink `{}` ({}), which is not in the job any more",
                    s.table, s.id
                ));
                continue;
            };
            let mut epochs = Vec::with_capacity(s.epochs.len());
            let mut fits = true;
            for e in &s.epochs {
                let batches = decode_batches(checkpoint.blob(e.blob))?;
                fits &= batches.iter().all(|b| same_types(b, schema));
                epochs.push((e.epoch, batches));
            }
            if fits {
                pipelines[*i].sinks.insert(s.id.clone(), epochs);
            } else {
                left_behind.push(format!(
                    "{rows} rows staged for sink `{}` no longer fit its columns",
                    s.table
                ));
            }
        }
    }
    if !left_behind.is_empty() && !allow_non_restored {
        return Err(JobError::Checkpoint(format!(
            "cannot restore {} {} from {}: the query changed and this state has no place in it:\n  - {}\nRun with --allow-non-restored-state to drop it (operators start empty), or --fresh to start over.",
            m.kind.as_str(),
            m.epoch,
            checkpoint.location,
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

/// Why the checkpoint's state cannot go into the job's subtasks, when a pipeline of both runs
/// at different parallelism: its keyed state is split by subtask, and moving key groups between
/// subtasks is not built yet.
fn parallelism_changed(job: &JobGraph, m: &crate::checkpoint::Manifest) -> Option<String> {
    for (p, id) in job.pipelines.iter().zip(job.pipeline_ids()) {
        let stored = m
            .pipelines
            .iter()
            .filter(|s| s.id == id || s.id.starts_with(&format!("{id}[")))
            .count();
        let now = p.parallelism.subtasks();
        if stored > 0 && stored != now && p.operators.iter().any(|op| op.state_kind().is_some()) {
            return Some(format!(
                "pipeline `{id}` was checkpointed as {stored} subtask(s) and would run as {now}; moving keyed state between subtasks is not supported yet. Run it with SET 'parallelism.default' = '{stored}' to restore it, or --fresh to start over"
            ));
        }
    }
    None
}

fn same_types(batch: &RecordBatch, schema: &arrow::datatypes::SchemaRef) -> bool {
    batch.num_columns() == schema.fields().len()
        && batch
            .schema()
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.data_type() == b.data_type())
}
