//! `sluice shell`: the interactive SQL shell, or its `-i` / `-f` files without a terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Args;
use sluice::config::SluiceConfig;
use sluice::shell::{interactive, local_session, run_file, server_session};

#[derive(Args)]
pub struct ShellArgs {
    /// Statements to run first: DDL and SET only (Flink's init file).
    #[arg(short = 'i', long = "init", value_name = "FILE")]
    init: Option<PathBuf>,
    /// Run this file's statements and exit (non-zero on the first error, with file:line:col);
    /// its jobs run to their end, or until Ctrl-C stops them with savepoints.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Run INSERTs as jobs of this job server (they outlive the shell) instead of inside it.
    #[arg(long, env = "SLUICE_SERVER")]
    server: Option<String>,
    /// The server's token, if it has one.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub async fn shell(args: ShellArgs, config: SluiceConfig) -> Result<ExitCode> {
    let mut signals = sluice::signals::StopSignals::listen();
    let mut session = match &args.server {
        Some(url) => server_session(&config, url, args.token.clone()),
        None => local_session(config).map_err(|e| anyhow!(e))?,
    };
    if let Some(init) = &args.init
        && !run_file(&mut session, init, true).await
    {
        return Ok(ExitCode::FAILURE);
    }
    let Some(file) = &args.file else {
        interactive(&mut session).await?;
        return Ok(ExitCode::SUCCESS);
    };
    if !run_file(&mut session, file, false).await {
        return Ok(ExitCode::FAILURE);
    }
    // As `sluice run`: the jobs the file started run to their end, or stop with savepoints.
    tokio::select! {
        () = session.wait_for_jobs() => {}
        _ = signals.next() => {
            let stopped = session.stop_jobs().await;
            eprintln!("stopped {} job(s) with savepoints", stopped.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
