//! `sluice server`: jobs kept in a state directory, served over a REST API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use sluice::config::SluiceConfig;
use sluice::jobs::JobManager;

#[derive(Args)]
pub struct ServerCommand {
    /// Where the job table and every job's checkpoints are kept.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Address to listen on; loopback unless you say otherwise.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer <token>` on every endpoint but /healthz.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub async fn serve(args: ServerCommand, config: SluiceConfig) -> Result<ExitCode> {
    if !args.listen.ip().is_loopback() && args.token.is_none() {
        bail!(
            "--listen {} is reachable from other machines: give the server a --token (or SLUICE_TOKEN)",
            args.listen
        );
    }
    let jobs = JobManager::open(&args.state_dir, config)?;
    eprintln!(
        "sluice server on http://{} (state in {})",
        args.listen,
        args.state_dir.display()
    );
    sluice::server::serve(args.listen, jobs, args.token).await?;
    Ok(ExitCode::SUCCESS)
}
