//! Running a job as one of its workers (`'sluice.workers' = 'kafka-group'`): the process joins
//! the job's consumer group, runs the tasks of the partitions the group gives it, and runs them
//! anew whenever that set changes.
//!
//! A change stops the running job with a savepoint (one checkpoint per partition, see
//! `checkpoint::partitioned`), then starts the job for the new set of partitions, each restored
//! from its own newest checkpoint, wherever it was written. A revoked partition is let go only
//! after that savepoint, so its next owner goes on exactly where this worker stopped. A worker
//! that dies without a savepoint leaves its partitions' last checkpoints: the group gives the
//! partitions to the others after its session timeout, and they restore those.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::supervisor::{Finished, JobLog, Launch, RunError, Script, replan, wait_to_restart};
use crate::checkpoint::{
    CheckpointConfig, CheckpointStore, CheckpointTarget, PartitionCheckpoints,
    default_checkpoint_dir,
};
use crate::config::SluiceConfig;
use crate::connectors::ConnectorConfig;
use crate::connectors::kafka::{GroupMember, Revocation};
use crate::plan::JobGraph;
use crate::runtime::metrics::JobMetrics;
use crate::runtime::restore::match_checkpoint;
use crate::runtime::{CheckpointSetup, JobReport, RuntimeOptions, fresh_run_id, run_job};
use crate::sql::Settings;
use crate::stream::JobError;

/// The longest a revocation waits for the job to stop: the group's protocol is held meanwhile.
const MAX_HANDOVER: Duration = Duration::from_secs(120);

/// How long a worker whose partition was taken waits for the group to say so.
const REASSIGN_WAIT: Duration = Duration::from_secs(30);

/// Runs `job` as one worker of it until `stop` turns true (or a bounded input ends).
pub(super) async fn supervise_worker(
    script: &Script,
    job: JobGraph,
    settings: &Settings,
    config: &SluiceConfig,
    start: &Launch,
    mut stop: watch::Receiver<bool>,
    log: &mut dyn JobLog,
) -> Result<Finished, RunError> {
    if start.fresh || start.savepoint.is_some() {
        return Err(RunError::Other(
            "--fresh and --from-savepoint are for a job one process runs; the workers of a job restore each partition's own checkpoints (start over with a new pipeline.name)".into(),
        ));
    }
    let ck = config.checkpoint.overlay(&settings.checkpoint);
    let Some(interval) = ck.interval_for(job.is_unbounded()) else {
        return Err(RunError::Other(
            "the workers of a job hand partitions over through checkpoints: set 'execution.checkpointing.interval'".into(),
        ));
    };
    let Some(ConnectorConfig::Kafka(kafka)) = job.sources.first().map(|s| &s.connector) else {
        return Err(RunError::Other(
            "the workers of a job share the partitions of a Kafka topic; this job reads none"
                .into(),
        ));
    };
    let group = job.worker_group();
    let handover = ck.timeout().min(MAX_HANDOVER);
    let kafka = kafka.clone();
    let joining = group.clone();
    let mut member =
        tokio::task::spawn_blocking(move || GroupMember::join(&kafka, &joining, handover))
            .await
            .map_err(|e| RunError::Other(format!("joining the consumer group: {e}")))??;
    log.line(&format!(
        "worker of job `{}` in consumer group `{group}`: topic `{}` has {} partitions",
        job.name, member.topic, member.partitions
    ));
    let dir = ck
        .dir
        .clone()
        .unwrap_or_else(|| default_checkpoint_dir().display().to_string());
    let job_dir = CheckpointStore::open(&dir, &job.name)?;
    let allow = start.allow_non_restored_state || ck.ignore_unclaimed_state == Some(true);
    let restart = ck.restart(true);
    let options = config.runtime_options();
    let began = Instant::now();
    let worker = worker_name();
    let mut planned = Some(job);
    let mut failures = 0;
    let mut last: Option<Finished> = None;
    let mut drain_pending = false;
    loop {
        // A stop that came during a handover (which never drains) runs the partitions once
        // more to drain them.
        let owned = if drain_pending {
            member.owned.borrow().clone().filter(|o| !o.is_empty())
        } else {
            wait_for_partitions(&mut member, &mut stop).await
        };
        let Some(owned) = owned else {
            return Ok(last.unwrap_or_else(|| Finished {
                report: idle_report(began),
                checkpoints: Some(job_dir.location().to_string()),
            }));
        };
        let draining = std::mem::take(&mut drain_pending);
        let graph = match planned.take() {
            Some(job) => job,
            None => replan(script).await?,
        };
        let owned_list: Vec<usize> = owned.iter().copied().collect();
        let graph = graph
            .for_worker(member.partitions, &owned_list)
            .map_err(RunError::Other)?;
        let partitions =
            PartitionCheckpoints::new(job_dir.clone(), &worker, member.partitions, &owned_list);
        let location = partitions.location().to_string();
        let (graph, setup) =
            restore_partitions(graph, partitions, &ck, interval, allow, log).await?;
        let metrics = JobMetrics::of(&graph);
        metrics.checkpoints.set_location(Some(location.clone()));
        metrics.set_owned_partitions(&owned_list);
        log.running(&metrics);
        let shown = metrics.clone();
        let started = Instant::now();
        let (job_stop, job_stopped) = watch::channel(false);
        // A handover never drains (its windows go on at the next owner); a stop may (`--drain`).
        let drain = Arc::new(AtomicBool::new(draining));
        let run_options = RuntimeOptions {
            drain_on_stop: drain.clone(),
            ..options.clone()
        };
        let run = run_job(graph, run_options, metrics, job_stopped, Some(setup));
        if draining {
            let _ = job_stop.send(true);
        }
        let watch = RunWatch {
            job_stop,
            drain,
            drain_wanted: &start.drain_on_stop,
            stopping: draining,
            moved: false,
            drain_pending: false,
        };
        let (result, watch) = watch.run(run, &owned, &mut member, &mut stop).await;
        log.ended();
        // Until the next run, this worker runs no partition.
        shown.set_owned_partitions(&[]);
        let (stopping, moved) = (watch.stopping, watch.moved);
        drain_pending = watch.drain_pending;
        match result {
            Ok(_) if drain_pending => {}
            Ok(report) if stopping || !moved || !report.stopped => {
                return Ok(Finished {
                    report,
                    checkpoints: Some(location),
                });
            }
            Ok(report) => {
                let now = member.owned.borrow().clone().unwrap_or_default();
                log.line(&format!(
                    "partitions moved: this worker now owns {}; its partitions {} were handed over at their savepoint",
                    list(&now.iter().copied().collect::<Vec<_>>()),
                    list(&owned_list)
                ));
                last = Some(Finished {
                    report,
                    checkpoints: Some(location),
                });
            }
            // The group gave the partition to another worker before telling this one: wait
            // until it does, rather than claim the partition back.
            Err(JobError::PartitionTaken(why)) if !stopping => {
                log.line(&format!(
                    "{why}; waiting for the group to reassign partitions"
                ));
                if member.owned.borrow().as_ref() == Some(&owned) {
                    tokio::select! {
                        _ = tokio::time::sleep(REASSIGN_WAIT) => {}
                        _ = member.owned.changed() => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                }
            }
            // Stopped, and a partition had moved on meanwhile: its new owner goes on from its
            // own checkpoint; this worker's stop is done all the same.
            Err(JobError::PartitionTaken(why)) => {
                log.line(&format!("{why}; stopped"));
                return Ok(last.unwrap_or_else(|| Finished {
                    report: idle_report(began),
                    checkpoints: Some(location),
                }));
            }
            Err(e) if e.is_restartable() && !stopping => {
                wait_to_restart(&restart, &mut failures, started, e, &stop, log).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One run of the job, watched for a stop of the worker and for changes of its partitions.
struct RunWatch<'a> {
    job_stop: watch::Sender<bool>,
    /// Read by the job when it stops: drain its windows then.
    drain: Arc<AtomicBool>,
    /// Whether a stop of the worker drains (`--drain`).
    drain_wanted: &'a AtomicBool,
    /// The worker was stopped (or the run only drains).
    stopping: bool,
    /// The worker's partitions changed: the run stops with a savepoint.
    moved: bool,
    /// Stopped during a handover, with `--drain`: one more run drains the partitions.
    drain_pending: bool,
}

impl RunWatch<'_> {
    /// Runs `run` to its end, stopping it with a savepoint when the worker is stopped or its
    /// partitions change; partitions revoked meanwhile are let go only once it has ended.
    async fn run(
        mut self,
        run: impl std::future::Future<Output = Result<JobReport, JobError>>,
        owned: &BTreeSet<usize>,
        member: &mut GroupMember,
        stop: &mut watch::Receiver<bool>,
    ) -> (Result<JobReport, JobError>, Self) {
        tokio::pin!(run);
        let mut revocations: Vec<Revocation> = Vec::new();
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                changed = stop.changed(), if !self.stopping => {
                    if changed.is_err() || *stop.borrow() {
                        self.stopping = true;
                        let wanted = self.drain_wanted.load(Relaxed);
                        self.drain.store(wanted, Relaxed);
                        // Stopped for a handover already: its savepoint keeps windows open.
                        self.drain_pending = wanted && self.moved;
                        let _ = self.job_stop.send(true);
                    }
                }
                _ = member.owned.changed(), if !self.moved => {
                    if member.owned.borrow().as_ref() != Some(owned) {
                        self.moved = true;
                        let _ = self.job_stop.send(true);
                    }
                }
                Some(r) = member.revoked.recv() => {
                    revocations.push(r);
                    self.moved = true;
                    let _ = self.job_stop.send(true);
                }
            }
        };
        drop(revocations);
        (result, self)
    }
}

/// How the job for `partitions` starts: each claimed, then restored from its newest checkpoint,
/// wherever that was written.
async fn restore_partitions(
    mut graph: JobGraph,
    partitions: PartitionCheckpoints,
    ck: &CheckpointConfig,
    interval: Duration,
    allow: bool,
    log: &mut dyn JobLog,
) -> Result<(JobGraph, CheckpointSetup), RunError> {
    let run_id = partitions.run_id(fresh_run_id).await?;
    graph.set_run_id(&run_id);
    let owned = list(&partitions.owned());
    let reading = Instant::now();
    // Claimed first: a worker that still runs one of them completes no checkpoint after the
    // one read here.
    partitions.claim().await?;
    let restore = match partitions.latest().await? {
        Some(c) => {
            let plan = match_checkpoint(&graph, &c, ck.max_parallelism(), allow)?;
            log.line(&format!(
                "running partitions {owned}, restored from {} (read in {} ms)",
                c.location,
                reading.elapsed().as_millis()
            ));
            for d in &plan.dropped {
                log.line(&format!("warning: dropping state: {d}"));
            }
            Some(plan)
        }
        None => {
            log.line(&format!(
                "running partitions {owned} from the start (no checkpoint yet)"
            ));
            None
        }
    };
    let epoch_base = partitions.newest_epoch().await?;
    let store = CheckpointTarget::Partitions(partitions);
    let setup = CheckpointSetup::new(ck, interval, store, run_id, epoch_base, restore);
    Ok((graph, setup))
}

/// Waits until the group gives this worker some partitions (answering revocations meanwhile:
/// nothing runs them); `None` when the worker is stopped first.
async fn wait_for_partitions(
    member: &mut GroupMember,
    stop: &mut watch::Receiver<bool>,
) -> Option<BTreeSet<usize>> {
    loop {
        if *stop.borrow() {
            return None;
        }
        if let Some(owned) = member.owned.borrow().as_ref().filter(|o| !o.is_empty()) {
            return Some(owned.clone());
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
            _ = member.owned.changed() => {}
            Some(revocation) = member.revoked.recv() => drop(revocation),
        }
    }
}

/// This worker's name in the checkpoint store's claims: unique per process start.
fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let nonce: u32 = rand::random();
    format!(
        "{host}{}{}-{nonce:08x}",
        if host.is_empty() { "" } else { "-" },
        std::process::id()
    )
}

fn list(partitions: &[usize]) -> String {
    let all: Vec<String> = partitions.iter().map(|p| p.to_string()).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// The report of a worker that was stopped before it ever got a partition.
fn idle_report(began: Instant) -> JobReport {
    JobReport {
        rows_in: 0,
        rows_out: 0,
        bad_records: 0,
        late_rows: 0,
        elapsed: began.elapsed(),
        stopped: true,
        last_checkpoint: None,
    }
}
