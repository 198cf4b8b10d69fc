//! `sluice run`: a job in the foreground, restored from its checkpoints, restarted in-process
//! when it fails, stopped with a savepoint.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use sluice::config::SluiceConfig;
use sluice::jobs::{JobLog, Launch, Script, supervise};
use sluice::runtime::JobReport;
use sluice::runtime::metrics::{JobMetrics, StatusLine, group};
use tokio::sync::watch;

use crate::print_output;
use sluice::signals::StopSignals;

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
    // Listening from the start: a Ctrl-C or SIGTERM while the file is planned stops the job as
    // soon as it starts (with its savepoint), never kills the process half-way.
    let (stop_tx, stop_rx) = watch::channel(false);
    let drain = args.drain;
    let mut signals = StopSignals::listen();
    tokio::spawn(async move {
        if signals.next().await {
            let _ = stop_tx.send(true);
            // Told after the stop is asked for: stderr may be closed (a parent that went away).
            let _ = writeln!(
                std::io::stderr(),
                "\nstopping: {} (Ctrl-C again to abort)",
                if drain {
                    "emitting every window, then a final checkpoint"
                } else {
                    "taking a savepoint"
                }
            );
            if signals.next().await {
                std::process::exit(130);
            }
        }
    });
    let script = Script::from_file(file)?;
    let planned = script.plan().await?;
    print_output(&planned.output);
    let Some(job) = planned.job else {
        if !planned.output.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        bail!("{}: no INSERT INTO or SELECT to run", file.display());
    };

    let start = Launch {
        fresh: args.fresh,
        savepoint: args.from_savepoint.clone(),
        allow_non_restored_state: args.allow_non_restored_state,
        drain_on_stop: std::sync::Arc::new(args.drain.into()),
    };
    let mut log = Terminal {
        status_line: !args.quiet && std::io::stderr().is_terminal(),
        status: None,
    };
    let finished = supervise(
        &script,
        job,
        &planned.settings,
        config,
        &start,
        stop_rx,
        &mut log,
    )
    .await?;
    print_report(&finished.report, finished.checkpoints.as_deref());
    Ok(ExitCode::SUCCESS)
}

/// `sluice run`'s [`JobLog`]: lines on stderr, and a live status line on a terminal.
struct Terminal {
    status_line: bool,
    status: Option<tokio::task::JoinHandle<()>>,
}

impl JobLog for Terminal {
    fn line(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn running(&mut self, metrics: &JobMetrics) {
        if !self.status_line {
            return;
        }
        let m = metrics.clone();
        self.status = Some(tokio::spawn(async move {
            let mut line = StatusLine::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprint!("\r\x1b[2K{}", line.render(&m, Duration::from_secs(1)));
            }
        }));
    }

    fn ended(&mut self) {
        if let Some(s) = self.status.take() {
            s.abort();
            eprint!("\r\x1b[2K");
        }
    }
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
