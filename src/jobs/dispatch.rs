//! Which supervisor runs a job: this process alone, or one of its workers.

use tokio::sync::watch;

use super::supervisor::{Finished, JobLog, Launch, RunError, Script, supervise_alone};
use super::worker::supervise_worker;
use crate::config::SluiceConfig;
use crate::plan::JobGraph;
use crate::sql::Settings;

/// Runs `job` (planned from `script`) until it ends or `stop` turns true, restoring and
/// restarting as its settings say: in this process, or as one of its workers
/// (`'sluice.workers' = 'kafka-group'`).
pub async fn supervise(
    script: &Script,
    job: JobGraph,
    settings: &Settings,
    config: &SluiceConfig,
    start: &Launch,
    stop: watch::Receiver<bool>,
    log: &mut dyn JobLog,
) -> Result<Finished, RunError> {
    if settings.workers {
        supervise_worker(script, job, settings, config, start, stop, log).await
    } else {
        supervise_alone(script, job, settings, config, start, stop, log).await
    }
}
