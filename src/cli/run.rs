//! `sluice run`: a job in the foreground, restored from its checkpoints, restarted in-process
//! when it fails, stopped with a savepoint.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use sluice::checkpoint::{
    CheckpointConfig, CheckpointKind, CheckpointStore, default_checkpoint_dir,
};
use sluice::config::SluiceConfig;
use sluice::plan::JobGraph;
use sluice::runtime::metrics::{JobMetrics, StatusLine, bytes, group};
use sluice::runtime::restore::match_checkpoint;
use sluice::runtime::{CheckpointSetup, JobReport, fresh_run_id, run_job};
use tokio::sync::watch;

use crate::{plan_file, print_output, stop_requested};

#[derive(Args)]
pub struct RunArgs {
    /// The .sql pipeline file.
    pub file: PathBuf,
    /// No live status line, even on a terminal.
    #[arg(long)]
    pub quiet: bool,
    /// Start over: ignore the job's stored checkpoints.
    #[arg(long, conflicts_with = "from_savepoint")]
    pub fresh: bool,
    /// Restore from this checkpoint or savepoint directory (`.../<job>/chk-N`), or the newest
    /// one in a job's directory (also `SET 'execution.savepoint.path'`).
    #[arg(long, value_name = "DIR")]
    pub from_savepoint: Option<String>,
    /// Start even when some stored state has no place in the changed query (it is dropped).
    #[arg(long)]
    pub allow_non_restored_state: bool,
    /// On Ctrl-C or SIGTERM, end event time first so every open window is emitted, instead of
    /// keeping them in the final savepoint (Flink's STOP ... WITH DRAIN).
    #[arg(long)]
    pub drain: bool,
}

pub async fn run(args: &RunArgs, config: &SluiceConfig) -> Result<ExitCode> {
    let file = args.file.as_path();
    let planned = plan_file(file).await?;
    print_output(&planned.output);
    let Some(mut job) = planned.job else {
        if !planned.output.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        bail!("{}: no INSERT INTO or SELECT to run", file.display());
    };
    let ck = config.checkpoint.overlay(&planned.settings.checkpoint);
    let interval = ck.interval_for(job.is_unbounded());
    let restart = ck.restart(interval.is_some());

    let (stop_tx, stop_rx) = watch::channel(false);
    let drain = args.drain;
    tokio::spawn(async move {
        if stop_requested().await {
            eprintln!(
                "\nstopping: {} (Ctrl-C again to abort)",
                if drain {
                    "emitting every window, then a final checkpoint"
                } else {
                    "taking a savepoint"
                }
            );
            let _ = stop_tx.send(true);
            if stop_requested().await {
                std::process::exit(130);
            }
        }
    });
    let mut options = config.runtime_options();
    options.drain_on_stop = args.drain;

    let mut failures: u32 = 0;
    let mut first = true;
    loop {
        let setup = match interval {
            Some(interval) => Some(checkpoint_setup(&job, &ck, interval, args, first).await?),
            None => None,
        };
        first = false;
        let metrics = JobMetrics::new(
            job.sources.iter().map(|s| s.table.clone()),
            job.pipelines.iter().map(|p| {
                let names: Vec<&str> = p.sinks.iter().map(|s| s.table.as_str()).collect();
                names.join(", ")
            }),
        );
        let show_status = !args.quiet && std::io::stderr().is_terminal();
        let status = show_status.then(|| {
            let m = metrics.clone();
            tokio::spawn(async move {
                let mut line = StatusLine::new();
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    eprint!("\r\x1b[2K{}", line.render(&m, Duration::from_secs(1)));
                }
            })
        });
        let location = setup.as_ref().map(|s| s.store.location().to_string());
        let started = std::time::Instant::now();
        let result = run_job(job, options.clone(), metrics, stop_rx.clone(), setup).await;
        if let Some(s) = status {
            s.abort();
            eprint!("\r\x1b[2K");
        }
        match result {
            Ok(report) => {
                print_report(&report, location.as_deref());
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) if e.is_restartable() && !*stop_rx.borrow() => {
                if started.elapsed() >= restart.reset_after {
                    failures = 0;
                }
                failures += 1;
                if failures > restart.attempts {
                    if restart.attempts > 0 {
                        eprintln!(
                            "error: the job failed {failures} times; giving up (restart-strategy)"
                        );
                    }
                    return Err(e.into());
                }
                let wait = restart.backoff(failures);
                eprintln!(
                    "error: {e}\nrestarting from the last checkpoint in {:.1} s (restart {failures}{})",
                    wait.as_secs_f64(),
                    if restart.attempts == u32::MAX {
                        String::new()
                    } else {
                        format!(" of {}", restart.attempts)
                    }
                );
                let mut stop = stop_rx.clone();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => return Err(e.into()),
                }
                job = plan_file(file)
                    .await?
                    .job
                    .context("the file no longer has a job to run")?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Where the job's checkpoints go and what it restores: `--fresh` and `--from-savepoint` apply
/// to the first start only; a restart after a failure always takes the latest checkpoint.
async fn checkpoint_setup(
    job: &JobGraph,
    ck: &CheckpointConfig,
    interval: Duration,
    args: &RunArgs,
    first: bool,
) -> Result<CheckpointSetup> {
    let dir = ck
        .dir
        .clone()
        .unwrap_or_else(|| default_checkpoint_dir().display().to_string());
    let store = CheckpointStore::open(&dir, &job.name)?;
    let savepoint = args
        .from_savepoint
        .clone()
        .or_else(|| ck.savepoint_path.clone())
        .filter(|_| first);
    let reading = std::time::Instant::now();
    let checkpoint = if first && args.fresh {
        None
    } else if let Some(path) = savepoint {
        Some(read_checkpoint(&path).await?)
    } else {
        store.latest().await?
    };
    let allow = args.allow_non_restored_state || ck.ignore_unclaimed_state == Some(true);
    let restore = match &checkpoint {
        Some(c) => {
            let plan = match_checkpoint(job, c, allow)?;
            let m = &c.manifest;
            let age = (chrono::Utc::now().timestamp_millis() - m.created_ms).max(0) / 1000;
            eprintln!(
                "restoring {} {} of job `{}` ({age} s old, {}, read in {} ms) from {}",
                m.kind.as_str(),
                m.epoch,
                m.job,
                bytes(m.state_bytes),
                reading.elapsed().as_millis(),
                c.location
            );
            for d in &plan.dropped {
                eprintln!("warning: dropping state: {d}");
            }
            if m.kind == CheckpointKind::Final {
                eprintln!(
                    "job `{}` already ran to the end of its input; run with --fresh to run it again",
                    m.job
                );
            }
            Some(plan)
        }
        None => None,
    };
    // Epochs go on after every checkpoint in the directory, also on a fresh start, so the
    // newest is always the one to restore.
    let epoch_base = store.newest_epoch().await?;
    Ok(CheckpointSetup {
        run_id: restore
            .as_ref()
            .map_or_else(fresh_run_id, |r| r.run_id.clone()),
        epoch_base,
        store,
        interval,
        mode: ck.mode(),
        timeout: ck.timeout(),
        num_retained: ck.num_retained(),
        max_parallelism: ck.max_parallelism(),
        restore,
    })
}

/// A checkpoint directory (`.../chk-N`), or the newest in a job's directory.
pub async fn read_checkpoint(path: &str) -> Result<sluice::checkpoint::Checkpoint> {
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
        .with_context(|| format!("no completed checkpoint in {path}"))
}

fn print_report(report: &JobReport, location: Option<&str>) {
    let late = if report.late_rows > 0 {
        format!(", {} late rows", group(report.late_rows))
    } else {
        String::new()
    };
    let bad = if report.bad_records > 0 {
        format!(", {} bad records skipped", group(report.bad_records))
    } else {
        String::new()
    };
    eprintln!(
        "{}: {} rows in, {} rows out in {:.2}s{late}{bad}",
        if report.stopped { "stopped" } else { "done" },
        group(report.rows_in),
        group(report.rows_out),
        report.elapsed.as_secs_f64()
    );
    if let (Some(c), Some(location)) = (report.last_checkpoint, location) {
        eprintln!(
            "last {}: {location}/chk-{:08}{}",
            c.describe(),
            c.epoch,
            if report.stopped {
                "; run the same command to resume from it"
            } else {
                ""
            }
        );
    }
}
