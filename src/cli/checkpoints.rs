//! `sluice checkpoints list|inspect`: a job's checkpoints at a glance.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use sluice::checkpoint::{CheckpointStore, Manifest, default_checkpoint_dir};
use sluice::runtime::metrics::{bytes, group};

use sluice::jobs::read_checkpoint;

#[derive(Subcommand)]
pub enum CheckpointsCommand {
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

pub async fn checkpoints(command: CheckpointsCommand) -> Result<ExitCode> {
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
