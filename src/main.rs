//! The `sluice` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use sluice::config::SluiceConfig;
use sluice::generate::{GenOptions, GenTarget, generate_fleet};
use sluice::jobs::Script;
use sluice::runtime::metrics::group;

mod cli;

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
    Run(cli::run::RunArgs),
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
    Checkpoints(cli::checkpoints::CheckpointsCommand),
    /// Run the job server: a REST API over jobs that outlive terminals and restarts.
    Server(cli::server::ServerCommand),
    /// The interactive SQL shell (like Flink's SQL client); `-f FILE` runs a file through it.
    Shell(cli::shell::ShellArgs),
    #[command(flatten)]
    Client(cli::client::ClientCommand),
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
    /// Create the topic with this many partitions first (unless it exists).
    #[arg(long, requires = "topic")]
    partitions: Option<i32>,
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
        Command::Run(args) => cli::run::run(&args, &config).await,
        Command::Checkpoints(c) => cli::checkpoints::checkpoints(c).await,
        Command::Server(args) => cli::server::serve(args, config).await,
        Command::Shell(args) => cli::shell::shell(args, config).await,
        Command::Client(c) => cli::client::run(c).await,
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
    Ok(Script::from_file(file)?.plan().await?)
}

/// What a script's SHOW, DESCRIBE and EXPLAIN statements print.
pub(crate) fn print_output(output: &[String]) {
    for text in output {
        println!("{}", text.trim_end());
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
                partitions: a.partitions,
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
