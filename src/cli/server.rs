//! `sluice server`: jobs kept in a state directory, served over a REST API and a web console.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use sluice::config::SluiceConfig;
use sluice::jobs::{JobManager, LocalAccess};
use sluice::server::Tls;
use sluice::sql::parse_script_with;

#[derive(Args)]
pub struct ServerCommand {
    /// Where the job table and every job's checkpoints are kept.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Address to listen on; loopback unless you say otherwise.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer <token>` on every endpoint but /healthz and the console.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A directory jobs' `filesystem` tables and checkpoints may use (repeatable). A server
    /// listening beyond loopback allows no local path without one.
    #[arg(long = "allow-dir", value_name = "DIR")]
    allow_dirs: Vec<PathBuf>,
    /// Pipeline files (or directories of `*.sql` files) to run at start unless a job of the
    /// same name exists, `${VAR}`s from the server's environment: for docker-compose and
    /// Kubernetes.
    #[arg(long, value_name = "FILE|DIR", num_args = 1..)]
    submit: Vec<PathBuf>,
}

pub async fn serve(args: ServerCommand, config: SluiceConfig) -> Result<ExitCode> {
    let mut signals = sluice::signals::StopSignals::listen();
    let exposed = !args.listen.ip().is_loopback();
    if exposed && args.token.is_none() {
        bail!(
            "--listen {} is reachable from other machines: give the server a --token (or SLUICE_TOKEN)",
            args.listen
        );
    }
    let access = if exposed || !args.allow_dirs.is_empty() {
        LocalAccess::only(&args.allow_dirs)
    } else {
        LocalAccess::any()
    };
    let jobs = JobManager::open(&args.state_dir, config, access)?;
    for file in pipeline_files(&args.submit)? {
        submit_at_start(&jobs, &file).await?;
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls { cert, key }),
        _ => None,
    };
    eprintln!(
        "sluice server on {}://{} (state in {})",
        if tls.is_some() { "https" } else { "http" },
        args.listen,
        args.state_dir.display()
    );
    tokio::select! {
        served = sluice::server::serve(args.listen, jobs.clone(), args.token, tls) => served?,
        _ = signals.next() => {
            eprintln!("stopping: every running job takes a savepoint and resumes at the next start");
            let n = jobs.shutdown(SHUTDOWN_GRACE).await;
            eprintln!("{n} jobs suspended");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How long running jobs get to take their savepoints when the server is asked to stop
/// (Docker and Kubernetes wait 10 and 30 s by default before they kill).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// The files given, with each directory replaced by its `*.sql` files in name order.
fn pipeline_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sql") && p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Submits `file` as a job named after it, unless the server has a job of that name already
/// (a restarted container must not run its pipelines twice).
async fn submit_at_start(jobs: &JobManager, file: &PathBuf) -> Result<()> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .with_context(|| format!("--submit {}: not a file name", file.display()))?;
    if let Some(job) = jobs.list().into_iter().find(|j| j.record.name == name) {
        eprintln!(
            "{}: job {} `{name}` exists ({:?}), not submitted again",
            file.display(),
            job.record.id,
            job.record.status
        );
        return Ok(());
    }
    let sql =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    // The job keeps the values of the variables it uses, not the whole environment.
    let used = RefCell::new(BTreeMap::new());
    let _ = parse_script_with(&file.display().to_string(), &sql, |var| {
        let value = std::env::var(var).ok();
        if let Some(v) = &value {
            used.borrow_mut().insert(var.to_string(), v.clone());
        }
        value
    });
    let job = jobs
        .submit(Some(name), sql, used.into_inner())
        .await
        .with_context(|| format!("--submit {}", file.display()))?;
    eprintln!("{}: submitted as job {}", file.display(), job.record.id);
    Ok(())
}
