//! Running a job to its end the way every front end does (`sluice run`, the job server, the
//! shell): restore it from its checkpoints, run it, and when it fails restart it in-process from
//! the last checkpoint by the restart strategy. What happens is told to a [`JobLog`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::checkpoint::{
    Checkpoint, CheckpointConfig, CheckpointKind, CheckpointStore, CheckpointTarget,
    RestartStrategy, StoreError, default_checkpoint_dir,
};
use crate::config::SluiceConfig;
use crate::plan::JobGraph;
use crate::runtime::metrics::{JobMetrics, bytes};
use crate::runtime::restore::match_checkpoint;
use crate::runtime::{CheckpointSetup, JobReport, fresh_run_id, run_job};
use crate::sql::{PlannedScript, Planner, Settings, SqlError, parse_script_with};
use crate::stream::JobError;

/// A script to run: its name in messages (a file path), its text, and where `${VAR}` values come
/// from (`None`: the environment).
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub text: String,
    pub variables: Option<BTreeMap<String, String>>,
}

impl Script {
    /// A `.sql` file, its variables from the environment.
    pub fn from_file(path: &std::path::Path) -> Result<Script, RunError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RunError::Other(format!("cannot read {}: {e}", path.display())))?;
        Ok(Script {
            name: path.display().to_string(),
            text,
            variables: None,
        })
    }

    /// Parses and plans the script (no data is read).
    pub async fn plan(&self) -> Result<PlannedScript, SqlError> {
        let parsed = parse_script_with(&self.name, &self.text, |var| match &self.variables {
            Some(vars) => vars.get(var).cloned(),
            None => std::env::var(var).ok(),
        })?;
        Planner::new().plan_script(&parsed).await
    }
}

/// How a job starts (its first start: how it treats stored state) and stops.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Ignore stored checkpoints.
    pub fresh: bool,
    /// Restore this checkpoint directory (`.../chk-N`) or the newest of a job directory.
    pub savepoint: Option<String>,
    /// Start even when some stored state has no place in a changed query.
    pub allow_non_restored_state: bool,
    /// On a stop, end event time first so every window is emitted (`--drain`); read when the
    /// stop comes.
    pub drain_on_stop: Arc<AtomicBool>,
}

/// What a supervised job tells its front end.
pub trait JobLog: Send {
    /// A line for the user: restores, dropped state, failures and restarts.
    fn line(&mut self, text: &str);
    /// A run (the first, or one after a restart) starts with these counters.
    fn running(&mut self, _metrics: &JobMetrics) {}
    /// The run that was running ended (before a restart or at the end).
    fn ended(&mut self) {}
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Checkpoint(#[from] StoreError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("{0}")]
    Other(String),
}

/// How a supervised job ended.
pub struct Finished {
    pub report: JobReport,
    /// Where its checkpoints are (`<dir>/<job>`), when it took any.
    pub checkpoints: Option<String>,
}

/// Runs `job` (planned from `script`) in this process until it ends or `stop` turns true,
/// restoring and restarting as its settings say.
pub async fn supervise_alone(
    script: &Script,
    mut job: JobGraph,
    settings: &Settings,
    config: &SluiceConfig,
    start: &Launch,
    stop: watch::Receiver<bool>,
    log: &mut dyn JobLog,
) -> Result<Finished, RunError> {
    let ck = config.checkpoint.overlay(&settings.checkpoint);
    let interval = ck.interval_for(job.is_unbounded());
    let restart = ck.restart(interval.is_some());
    let mut options = config.runtime_options();
    options.drain_on_stop = start.drain_on_stop.clone();
    let mut failures: u32 = 0;
    let mut first = true;
    loop {
        let setup = match interval {
            Some(interval) => {
                let stored = load_checkpoint(job.name.clone(), &ck, start, first).await?;
                Some(checkpoint_setup(&job, &ck, interval, start, stored, log)?)
            }
            None => None,
        };
        first = false;
        let metrics = JobMetrics::of(&job);
        let checkpoints = setup.as_ref().map(|s| s.store.location().to_string());
        metrics.checkpoints.set_location(checkpoints.clone());
        log.running(&metrics);
        let started = Instant::now();
        let result = run_job(job, options.clone(), metrics, stop.clone(), setup).await;
        log.ended();
        let error = match result {
            Ok(report) => {
                return Ok(Finished {
                    report,
                    checkpoints,
                });
            }
            Err(e) if e.is_restartable() && !*stop.borrow() => e,
            Err(e) => return Err(e.into()),
        };
        wait_to_restart(&restart, &mut failures, started, error, &stop, log).await?;
        job = replan(script).await?;
    }
}

/// After a failure of a run that started at `started`: waits as the restart strategy says, or
/// gives the error back when it says to give up (or the job is stopped meanwhile).
pub(super) async fn wait_to_restart(
    restart: &RestartStrategy,
    failures: &mut u32,
    started: Instant,
    error: JobError,
    stop: &watch::Receiver<bool>,
    log: &mut dyn JobLog,
) -> Result<JobError, RunError> {
    if started.elapsed() >= restart.reset_after {
        *failures = 0;
    }
    *failures += 1;
    if *failures > restart.attempts {
        if restart.attempts > 0 {
            log.line(&format!(
                "the job failed {failures} times; giving up (restart-strategy)"
            ));
        }
        return Err(error.into());
    }
    let wait = restart.backoff(*failures);
    log.line(&format!(
        "error: {error}\nrestarting from the last checkpoint in {:.1} s (restart {failures}{})",
        wait.as_secs_f64(),
        if restart.attempts == u32::MAX {
            String::new()
        } else {
            format!(" of {}", restart.attempts)
        }
    ));
    let mut stopped = stop.clone();
    tokio::select! {
        _ = tokio::time::sleep(wait) => Ok(error),
        _ = stopped.wait_for(|s| *s) => Err(error.into()),
    }
}

/// The script's job planned again (a restart reads its files and variables anew).
pub(super) async fn replan(script: &Script) -> Result<JobGraph, RunError> {
    script
        .plan()
        .await?
        .job
        .ok_or_else(|| RunError::Other("the script no longer has a job to run".into()))
}

/// The job's checkpoint store, the checkpoint to restore (`start` applies to the first start
/// only; a restart after a failure always takes the latest), the newest epoch in the store, and
/// how long reading took.
struct Stored {
    store: CheckpointStore,
    checkpoint: Option<Checkpoint>,
    epoch_base: u64,
    read_in: Duration,
}

async fn load_checkpoint(
    job_name: String,
    ck: &CheckpointConfig,
    start: &Launch,
    first: bool,
) -> Result<Stored, RunError> {
    let dir = ck
        .dir
        .clone()
        .unwrap_or_else(|| default_checkpoint_dir().display().to_string());
    let store = CheckpointStore::open(&dir, &job_name)?;
    let savepoint = start
        .savepoint
        .clone()
        .or_else(|| ck.savepoint_path.clone())
        .filter(|_| first);
    let reading = Instant::now();
    let checkpoint = if first && start.fresh {
        None
    } else if let Some(path) = savepoint {
        Some(read_checkpoint(&path).await?)
    } else {
        store.latest().await?
    };
    let read_in = reading.elapsed();
    // Epochs go on after every checkpoint in the directory, also on a fresh start, so the
    // newest is always the one to restore.
    let epoch_base = store.newest_epoch().await?;
    Ok(Stored {
        store,
        checkpoint,
        epoch_base,
        read_in,
    })
}

/// How `job` takes checkpoints, with the stored state matched to it.
fn checkpoint_setup(
    job: &JobGraph,
    ck: &CheckpointConfig,
    interval: Duration,
    start: &Launch,
    stored: Stored,
    log: &mut dyn JobLog,
) -> Result<CheckpointSetup, RunError> {
    let allow = start.allow_non_restored_state || ck.ignore_unclaimed_state == Some(true);
    let restore = match &stored.checkpoint {
        Some(c) => {
            let plan = match_checkpoint(job, c, ck.max_parallelism(), allow)?;
            let m = &c.manifest;
            let age = (chrono::Utc::now().timestamp_millis() - m.created_ms).max(0) / 1000;
            log.line(&format!(
                "restoring {} {} of job `{}` ({age} s old, {}, read in {} ms) from {}",
                m.kind.as_str(),
                m.epoch,
                m.job,
                bytes(m.state_bytes),
                stored.read_in.as_millis(),
                c.location
            ));
            for d in &plan.dropped {
                log.line(&format!("warning: dropping state: {d}"));
            }
            if m.kind == CheckpointKind::Final {
                log.line(&format!(
                    "job `{}` already ran to the end of its input; run with --fresh to run it again",
                    m.job
                ));
            }
            Some(plan)
        }
        None => None,
    };
    let run_id = restore
        .as_ref()
        .map_or_else(fresh_run_id, |r| r.run_id.clone());
    let store = CheckpointTarget::Job(stored.store);
    Ok(CheckpointSetup::new(
        ck,
        interval,
        store,
        run_id,
        stored.epoch_base,
        restore,
    ))
}

/// A checkpoint directory (`.../chk-N`), or the newest in a job's directory.
pub async fn read_checkpoint(path: &str) -> Result<Checkpoint, RunError> {
    let trimmed = path.trim_end_matches('/');
    let (parent, last) = trimmed.rsplit_once('/').unwrap_or((".", trimmed));
    if let Some(epoch) = last
        .strip_prefix("chk-")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return Ok(CheckpointStore::at(parent)?.read(epoch).await?);
    }
    CheckpointStore::at(trimmed)?
        .latest()
        .await?
        .ok_or_else(|| RunError::Other(format!("no completed checkpoint in {path}")))
}
