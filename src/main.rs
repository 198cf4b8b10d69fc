//! The `sluice` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use sluice::checkpoint::{CheckpointConfig, CheckpointStore, Manifest, default_checkpoint_dir};
use sluice::config::SluiceConfig;
use sluice::generate::{GenOptions, GenTarget, generate_fleet};
use sluice::plan::JobGraph;
use sluice::runtime::metrics::{JobMetrics, StatusLine, bytes, group};
use sluice::runtime::restore::match_checkpoint;
use sluice::runtime::{CheckpointSetup, JobReport, fresh_run_id, run_job};
use sluice::sql::{Planner, parse_script};
use tokio::sync::watch;

/// Arrow batches allocate and free large buffers at a high rate; mimalloc reuses them where the
/// system allocator maps and zeroes fresh pages each time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sluice runs Flink SQL pipelines over Kafka and files as one small streaming binary.
#[derive(Parser)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    /// Runtime settings (default: ./sluice.yaml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `sluice=debug` (also RUST_LOG).
    #[arg(long, global = true, default_value = "warn", env = "SLUICE_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline in the foreground until its inputs end or Ctrl-C; resumes from the
    /// job's latest checkpoint when it has one.
    Run(RunArgs),
    /// Parse and plan a pipeline without running it; exit 1 with file:line:col on an error.
    Validate {
        /// The .sql pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the dataflow graph a pipeline becomes: sources, operators, sinks.
    Explain { file: PathBuf },
    /// Generate test data.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Look at a job's checkpoints.
    #[command(subcommand)]
    Checkpoints(CheckpointsCommand),
}

#[derive(Args)]
struct RunArgs {
    /// The .sql pipeline file.
    file: PathBuf,
    /// No live status line, even on a terminal.
    #[arg(long)]
    quiet: bool,
    /// Start over: ignore the job's stored checkpoints.
    #[arg(long, conflicts_with = "from_savepoint")]
    fresh: bool,
    /// Restore from this checkpoint or savepoint directory (`.../<job>/chk-N`), or the newest
    /// one in a job's directory (also `SET 'execution.savepoint.path'`).
    #[arg(long, value_name = "DIR")]
    from_savepoint: Option<String>,
    /// Start even when some stored state has no place in the changed query (it is dropped).
    #[arg(long)]
    allow_non_restored_state: bool,
    /// On Ctrl-C or SIGTERM, end event time first so every open window is emitted, instead of
    /// keeping them in the final savepoint (Flink's STOP ... WITH DRAIN).
    #[arg(long)]
    drain: bool,
}

#[derive(Subcommand)]
enum CheckpointsCommand {
    /// The completed checkpoints of a job: epoch, kind, age, size.
    List {
        /// The job's checkpoint directory (`<checkpoint dir>/<job>`, a path, file:// or s3://).
        dir: String,
    },
    /// One checkpoint in detail: source positions, operator state, staged sink rows.
    Inspect {
        /// A checkpoint directory (`.../chk-N`), or a job's directory for its newest.
        dir: String,
    },
}

#[derive(Subcommand)]
enum GenCommand {
    /// Vehicle telemetry (trips, stops, overspeed, harsh braking) as JSON lines, to Kafka or a file.
    Fleet(FleetArgs),
}

#[derive(Args)]
struct FleetArgs {
    /// Kafka bootstrap servers (with --topic).
    #[arg(long, requires = "topic", conflicts_with = "output")]
    brokers: Option<String>,
    /// Kafka topic to produce to; messages are keyed by vehicle_id.
    #[arg(long)]
    topic: Option<String>,
    /// Write to this file instead (`.gz` compresses).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Number of vehicles.
    #[arg(long, default_value_t = 100)]
    vehicles: u32,
    /// Events per second (0 = as fast as possible).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Stop after this many events (default: run until Ctrl-C).
    #[arg(long)]
    events: Option<u64>,
    /// Random seed: the same seed and start give the same events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Event time of the first event, `yyyy-MM-dd HH:mm:ss` UTC (default: now).
    #[arg(long)]
    start: Option<String>,
    /// Extra producer properties, `key=value`.
    #[arg(long = "property", short = 'X', value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let config = SluiceConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run(args) => run(&args, &config).await,
        Command::Checkpoints(c) => checkpoints(c).await,
        Command::Validate { files } => {
            let mut ok = true;
            for f in &files {
                match plan_file(f).await {
                    Ok(_) => println!("{}: ok", f.display()),
                    Err(e) => {
                        eprintln!("{e:#}");
                        ok = false;
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Explain { file } => {
            let planned = plan_file(&file).await?;
            print_output(&planned.output);
            match planned.explain() {
                Some(text) => print!("{text}"),
                None => println!(
                    "{}: no INSERT INTO or SELECT, nothing would run",
                    file.display()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen(GenCommand::Fleet(args)) => gen_fleet(args).await,
    }
}

async fn plan_file(file: &Path) -> Result<sluice::sql::PlannedScript> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let script = parse_script(&file.display().to_string(), &text)?;
    let mut planner = Planner::new();
    Ok(planner.plan_script(&script).await?)
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and Kubernetes send before they kill);
/// false when no signal can be listened for.
async fn stop_requested() -> bool {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return tokio::signal::ctrl_c().await.is_ok();
    };
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => ctrl_c.is_ok(),
        _ = term.recv() => true,
    }
}

/// What a script's SHOW, DESCRIBE and EXPLAIN statements print.
fn print_output(output: &[String]) {
    for text in output {
        println!("{}", text.trim_end());
    }
}

async fn run(args: &RunArgs, config: &SluiceConfig) -> Result<ExitCode> {
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
            if m.kind == sluice::checkpoint::CheckpointKind::Final {
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
async fn read_checkpoint(path: &str) -> Result<sluice::checkpoint::Checkpoint> {
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

async fn checkpoints(command: CheckpointsCommand) -> Result<ExitCode> {
    match command {
        CheckpointsCommand::List { dir } => {
            let store = CheckpointStore::at(&dir)?;
            let list = store.list().await?;
            if list.is_empty() {
                println!(
                    "no completed checkpoints in {} (a job's checkpoints are in <checkpoint dir>/<job>; by default {})",
                    store.location(),
                    default_checkpoint_dir().display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>8}  {:<10}  {:>10}  {:>8}  {:>10}  {:>12}",
                "epoch", "kind", "age", "took", "size", "staged rows"
            );
            let now = chrono::Utc::now().timestamp_millis();
            for m in &list {
                println!(
                    "{:>8}  {:<10}  {:>10}  {:>8}  {:>10}  {:>12}",
                    m.epoch,
                    m.kind.as_str(),
                    format!("{} s", (now - m.created_ms).max(0) / 1000),
                    format!("{} ms", m.duration_ms),
                    bytes(m.state_bytes),
                    group(m.staged_rows())
                );
            }
        }
        CheckpointsCommand::Inspect { dir } => {
            let c = read_checkpoint(&dir).await?;
            print_manifest(&c.manifest, &c.location);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_manifest(m: &Manifest, location: &str) {
    let created = chrono::DateTime::from_timestamp_millis(m.created_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    println!(
        "{} {} of job `{}` (run {})",
        m.kind.as_str(),
        m.epoch,
        m.job,
        m.run_id
    );
    println!("  at {location}");
    println!(
        "  completed {created}, took {} ms, {} ({} of operator state), key groups {}",
        m.duration_ms,
        bytes(m.state_bytes),
        bytes(m.operator_bytes()),
        m.max_parallelism
    );
    for s in &m.sources {
        println!("source `{}`", s.table);
        for (input, next) in &s.positions {
            println!("  {input}: next {next}");
        }
    }
    for p in &m.pipelines {
        let wm = chrono::DateTime::from_timestamp_millis(p.watermark)
            .filter(|_| p.watermark != i64::MIN && p.watermark != i64::MAX)
            .map_or_else(
                || "none".to_string(),
                |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
            );
        println!("pipeline `{}`  watermark {wm}", p.id);
        for o in &p.operators {
            println!(
                "  operator `{}`: {}  ({})",
                o.id,
                bytes(o.blob.len),
                o.describe
            );
        }
        for s in &p.sinks {
            for e in &s.epochs {
                println!(
                    "  sink `{}`: epoch {} staged, {} rows",
                    s.table,
                    e.epoch,
                    group(e.rows)
                );
            }
        }
    }
}

async fn gen_fleet(a: FleetArgs) -> Result<ExitCode> {
    let target = match (a.brokers, a.topic, a.output) {
        (Some(brokers), Some(topic), None) => {
            let properties = a
                .properties
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--property {p}: expected key=value"))
                })
                .collect::<Result<Vec<_>>>()?;
            GenTarget::Kafka {
                brokers,
                topic,
                properties,
            }
        }
        (None, None, Some(path)) => GenTarget::File(path),
        _ => bail!("give either --brokers and --topic, or --output FILE"),
    };
    let start_ms = match &a.start {
        Some(s) => chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .with_context(|| format!("--start {s}: expected yyyy-MM-dd HH:mm:ss"))?
            .and_utc()
            .timestamp_millis(),
        None => chrono::Utc::now().timestamp_millis() / 1000 * 1000,
    };
    let opts = GenOptions {
        vehicles: a.vehicles,
        seed: a.seed,
        rate: a.rate,
        events: a.events,
        start_ms,
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let n = generate_fleet(opts, target, stop).await?;
    eprintln!("generated {} events", group(n));
    Ok(ExitCode::SUCCESS)
}
