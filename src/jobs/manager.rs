//! The jobs of a job server: submitted, run as tasks, stopped, resumed, deleted; their table kept
//! in the state directory so a restarted server resumes what was running.
//!
//! ```text
//! <state>/jobs.json                    the job table (written aside and renamed)
//! <state>/checkpoints/<id>/<job>/...   each job's checkpoints
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::access::LocalAccess;
use super::dispatch::supervise;
use super::figures::{CheckpointFigures, Dataflow, History, SAMPLE_EVERY, Sample};
use super::secrets::{Masker, mask_sql, mask_variables};
use super::supervisor::{JobLog, Launch, Script};
use crate::checkpoint::CheckpointStore;
use crate::config::SluiceConfig;
use crate::runtime::metrics::JobMetrics;
use crate::sql::PlannedScript;

/// Flink's job statuses, plus `STOPPED`: stopped with a savepoint, resumable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Created,
    Running,
    Restarting,
    Failed,
    Canceled,
    Finished,
    Stopped,
}

impl JobStatus {
    /// Whether a task runs (or is about to) for the job.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobStatus::Created | JobStatus::Running | JobStatus::Restarting
        )
    }
}

/// How to stop a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopMode {
    /// Take a savepoint, keep open windows in it: `STOPPED`, resumable.
    Savepoint,
    /// End event time first (every window emitted), then a final checkpoint: `FINISHED`.
    Drain,
    /// Stop at once, as a crash would; a resume restores the last checkpoint: `CANCELED`.
    Cancel,
}

/// A job as the table keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    pub sql: String,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    pub status: JobStatus,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Why it failed, or the last restart's cause.
    pub error: Option<String>,
    /// Where its checkpoints are, once it ran with checkpoints.
    #[serde(default)]
    pub checkpoints: Option<String>,
}

/// One completed checkpoint of a job, for its page.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointSummary {
    pub id: u64,
    pub kind: &'static str,
    pub created_ms: i64,
    pub duration_ms: u64,
    pub bytes: u64,
    pub staged_rows: u64,
}

/// A job with its live figures, for listings: secret option values and variables masked.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub record: JobRecord,
    /// Seconds since its current run started; `None` when it does not run.
    pub uptime_s: Option<u64>,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Over the last ten seconds or so, while it runs.
    pub rows_in_per_s: Option<f64>,
    pub rows_out_per_s: Option<f64>,
    /// The lowest source watermark, ms since the epoch.
    pub watermark_ms: Option<i64>,
    /// Records behind the end of its Kafka topics.
    pub lag: Option<i64>,
    pub last_checkpoint: Option<String>,
    pub checkpoint: Option<CheckpointFigures>,
    /// The job's latest log lines (restores, restarts, its end).
    pub log: Vec<String>,
    /// Its dataflow with per-operator figures (one job's page only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataflow: Option<Dataflow>,
    /// The last minutes of samples (one job's page only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Sample>>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The SQL does not plan: the message has file:line:col.
    #[error("{0}")]
    Invalid(String),
    #[error("no job `{0}`")]
    NotFound(String),
    #[error("job `{id}` is {status:?}: {what}")]
    Conflict {
        id: String,
        status: JobStatus,
        what: &'static str,
    },
    #[error("job table {path}: {message}")]
    Table { path: String, message: String },
}

/// Lines of a job's log kept in memory.
const LOG_LINES: usize = 200;

/// What a job's log followers receive.
#[derive(Debug, Clone)]
pub enum LogEvent {
    Line(String),
    /// The job's run ended (stopped, finished, failed or canceled).
    End,
}

struct Entry {
    record: JobRecord,
    followers: broadcast::Sender<LogEvent>,
    stop: Option<watch::Sender<bool>>,
    drain: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
    metrics: Option<JobMetrics>,
    /// When the current run started (ms since the epoch).
    started_ms: Option<i64>,
    history: History,
    log: VecDeque<String>,
}

/// The jobs of a server.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

struct Inner {
    state_dir: PathBuf,
    config: SluiceConfig,
    access: LocalAccess,
    /// Set by [`JobManager::shutdown`]: jobs that stop now stay RUNNING in the table.
    shutting_down: AtomicBool,
    jobs: Mutex<BTreeMap<String, Entry>>,
}

impl JobManager {
    /// Opens the state directory and resumes every job that was running when the server last
    /// stopped (also after kill -9): from its latest checkpoint.
    pub fn open(
        state_dir: &Path,
        config: SluiceConfig,
        access: LocalAccess,
    ) -> Result<Self, JobsError> {
        // The job table holds jobs' variables (credentials among them) in clear, to resume the
        // jobs: a directory the server creates only its user may read. (One given to it, such as
        // a mounted volume, keeps the permissions it has.)
        if !state_dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(|e| JobsError::Table {
                    path: state_dir.display().to_string(),
                    message: e.to_string(),
                })?;
        }
        let manager = JobManager {
            inner: Arc::new(Inner {
                state_dir: state_dir.to_path_buf(),
                config,
                access,
                shutting_down: AtomicBool::new(false),
                jobs: Mutex::new(BTreeMap::new()),
            }),
        };
        let records = manager.load()?;
        let mut resume = Vec::new();
        {
            let mut jobs = manager.lock();
            for record in records {
                if record.status.is_active() {
                    resume.push(record.id.clone());
                }
                jobs.insert(record.id.clone(), Entry::new(record));
            }
        }
        for id in resume {
            manager.start(&id, Launch::default());
        }
        tokio::spawn(sample_jobs(Arc::downgrade(&manager.inner)));
        Ok(manager)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn table_path(&self) -> PathBuf {
        self.inner.state_dir.join("jobs.json")
    }

    fn load(&self) -> Result<Vec<JobRecord>, JobsError> {
        let path = self.table_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(JobsError::Table {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| JobsError::Table {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Writes the table aside and renames it over the old one: a crash leaves one or the other.
    fn save(&self, jobs: &BTreeMap<String, Entry>) {
        let records: Vec<&JobRecord> = jobs.values().map(|e| &e.record).collect();
        let path = self.table_path();
        let aside = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&records).expect("records serialize");
        let written = std::fs::write(&aside, text).and_then(|()| std::fs::rename(&aside, &path));
        if let Err(e) = written {
            tracing::error!("cannot save the job table {}: {e}", path.display());
        }
    }

    /// Plans a script (reading no data) as a job of this server would run: its local paths
    /// checked against the server's allowed directories. Errors carry file:line:col.
    pub async fn plan(&self, script: &Script) -> Result<PlannedScript, JobsError> {
        let masked = |e: String| JobsError::Invalid(masker(script).text(&e));
        let planned = script.plan().await.map_err(|e| masked(e.to_string()))?;
        self.inner.access.check(&planned).map_err(masked)?;
        Ok(planned)
    }

    /// The dataflow of a script as `sluice explain` prints it, secrets masked.
    pub async fn explain(&self, script: &Script) -> Result<String, JobsError> {
        let planned = self.plan(script).await?;
        Ok(masker(script).text(&planned.explain().unwrap_or_default()))
    }

    /// How this server runs jobs (and query previews).
    pub fn runtime_options(&self) -> crate::runtime::RuntimeOptions {
        self.inner.config.runtime_options()
    }

    /// Plans `sql` and starts it as a new job.
    pub async fn submit(
        &self,
        name: Option<String>,
        sql: String,
        variables: BTreeMap<String, String>,
    ) -> Result<JobView, JobsError> {
        let script = Script {
            name: format!("{}.sql", name.as_deref().unwrap_or("job")),
            text: sql.clone(),
            variables: Some(variables.clone()),
        };
        let planned = self.plan(&script).await?;
        let Some(job) = planned.job else {
            return Err(JobsError::Invalid(format!(
                "{}: no INSERT INTO to run",
                script.name
            )));
        };
        let now = chrono::Utc::now().timestamp_millis();
        let id = new_id();
        let record = JobRecord {
            id: id.clone(),
            name: name.unwrap_or(job.name),
            sql,
            variables,
            status: JobStatus::Created,
            created_ms: now,
            updated_ms: now,
            error: None,
            checkpoints: None,
        };
        {
            let mut jobs = self.lock();
            jobs.insert(id.clone(), Entry::new(record));
            self.save(&jobs);
        }
        self.start(&id, Launch::default());
        self.get(&id)
    }

    /// Starts (or restarts) the task of job `id`.
    fn start(&self, id: &str, launch: Launch) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut jobs = self.lock();
        let Some(entry) = jobs.get_mut(id) else {
            return;
        };
        let record = &entry.record;
        let script = Script {
            name: format!("{}.sql", record.name),
            text: record.sql.clone(),
            variables: Some(record.variables.clone()),
        };
        let mut config = self.inner.config.clone();
        // Each job's checkpoints live under the state directory, in a directory of its own.
        if config.checkpoint.dir.is_none() {
            config.checkpoint.dir = Some(
                self.inner
                    .state_dir
                    .join("checkpoints")
                    .join(id)
                    .display()
                    .to_string(),
            );
        }
        let drain = entry.drain.clone();
        drain.store(false, Relaxed);
        let launch = Launch {
            drain_on_stop: drain,
            ..launch
        };
        entry.stop = Some(stop_tx);
        set_status(entry, JobStatus::Running, None);
        let manager = self.clone();
        let job_id = id.to_string();
        entry.task = Some(tokio::spawn(async move {
            manager.run(job_id, script, config, launch, stop_rx).await;
        }));
        self.save(&jobs);
    }

    async fn run(
        &self,
        id: String,
        script: Script,
        config: SluiceConfig,
        launch: Launch,
        stop: watch::Receiver<bool>,
    ) {
        let mut log = EntryLog {
            manager: self.clone(),
            id: id.clone(),
        };
        let planned = match self.plan(&script).await {
            Ok(p) => p,
            Err(e) => return self.ended(&id, JobStatus::Failed, Some(e.to_string())),
        };
        let Some(job) = planned.job else {
            return self.ended(&id, JobStatus::Failed, Some("no job to run".into()));
        };
        let result = supervise(
            &script,
            job,
            &planned.settings,
            &config,
            &launch,
            stop,
            &mut log,
        )
        .await;
        match result {
            Ok(finished) => {
                let drained = launch.drain_on_stop.load(Relaxed);
                let status = if finished.report.stopped && !drained {
                    JobStatus::Stopped
                } else {
                    JobStatus::Finished
                };
                log.line(&format!(
                    "{}: {} rows in, {} rows out",
                    if status == JobStatus::Stopped {
                        "stopped with a savepoint"
                    } else {
                        "finished"
                    },
                    finished.report.rows_in,
                    finished.report.rows_out
                ));
                self.ended(&id, status, None);
            }
            Err(e) => {
                log.line(&format!("failed: {e}"));
                self.ended(&id, JobStatus::Failed, Some(e.to_string()));
            }
        }
    }

    fn ended(&self, id: &str, status: JobStatus, error: Option<String>) {
        let mut jobs = self.lock();
        if let Some(entry) = jobs.get_mut(id) {
            let _ = entry.followers.send(LogEvent::End);
            entry.stop = None;
            entry.task = None;
            // Suspended by the server's shutdown: the table keeps it running, so the next
            // server resumes it from the savepoint just taken.
            let suspended = status == JobStatus::Stopped && self.inner.shutting_down.load(Relaxed);
            if !suspended {
                set_status(entry, status, error);
            }
            self.save(&jobs);
        }
    }

    /// The server stops (SIGTERM: a container stopped, a pod rescheduled): every running job
    /// takes a savepoint and stops, waited for up to `grace`, and stays RUNNING in the table so
    /// the next start resumes it. Jobs still busy after `grace` resume from their last
    /// checkpoint instead.
    pub async fn shutdown(&self, grace: std::time::Duration) -> usize {
        self.inner.shutting_down.store(true, Relaxed);
        let tasks: Vec<_> = {
            let mut jobs = self.lock();
            jobs.values_mut()
                .filter(|e| e.record.status.is_active())
                .filter_map(|e| {
                    if let Some(stop) = &e.stop {
                        e.drain.store(false, Relaxed);
                        let _ = stop.send(true);
                    }
                    e.task.take()
                })
                .collect()
        };
        let n = tasks.len();
        let _ = tokio::time::timeout(grace, futures::future::join_all(tasks)).await;
        n
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobView> {
        self.lock().values().map(|e| e.view(false)).collect()
    }

    /// Every job's record with the counters of its current run (if it ran in this server).
    pub fn metrics(&self) -> Vec<(JobRecord, Option<JobMetrics>)> {
        self.lock()
            .values()
            .map(|e| (e.record.clone(), e.metrics.clone()))
            .collect()
    }

    pub fn get(&self, id: &str) -> Result<JobView, JobsError> {
        self.lock()
            .get(id)
            .map(|e| e.view(true))
            .ok_or_else(|| JobsError::NotFound(id.to_string()))
    }

    /// The job's log so far and, for a job that runs, what it logs from now on.
    pub fn follow(
        &self,
        id: &str,
    ) -> Result<(Vec<String>, Option<broadcast::Receiver<LogEvent>>), JobsError> {
        let jobs = self.lock();
        let entry = jobs
            .get(id)
            .ok_or_else(|| JobsError::NotFound(id.to_string()))?;
        let live = entry
            .record
            .status
            .is_active()
            .then(|| entry.followers.subscribe());
        Ok((entry.log.iter().cloned().collect(), live))
    }

    /// Stops a running job; returns at once (the job's status says when it is done).
    pub fn stop(&self, id: &str, mode: StopMode) -> Result<JobView, JobsError> {
        let mut jobs = self.lock();
        let entry = jobs
            .get_mut(id)
            .ok_or_else(|| JobsError::NotFound(id.to_string()))?;
        if !entry.record.status.is_active() {
            return Err(JobsError::Conflict {
                id: id.to_string(),
                status: entry.record.status,
                what: "only a running job can be stopped",
            });
        }
        match mode {
            StopMode::Cancel => {
                if let Some(task) = entry.task.take() {
                    task.abort();
                }
                let _ = entry.followers.send(LogEvent::End);
                entry.stop = None;
                set_status(entry, JobStatus::Canceled, None);
            }
            StopMode::Savepoint | StopMode::Drain => {
                entry.drain.store(mode == StopMode::Drain, Relaxed);
                if let Some(stop) = &entry.stop {
                    let _ = stop.send(true);
                }
            }
        }
        let view = entry.view(false);
        self.save(&jobs);
        Ok(view)
    }

    /// Starts a stopped, canceled, failed or finished job again from its latest checkpoint.
    pub fn resume(&self, id: &str) -> Result<JobView, JobsError> {
        {
            let jobs = self.lock();
            let entry = jobs
                .get(id)
                .ok_or_else(|| JobsError::NotFound(id.to_string()))?;
            if entry.record.status.is_active() {
                return Err(JobsError::Conflict {
                    id: id.to_string(),
                    status: entry.record.status,
                    what: "it is running already",
                });
            }
        }
        self.start(id, Launch::default());
        self.get(id)
    }

    /// The job's completed checkpoints and savepoints, oldest first.
    pub async fn checkpoints(&self, id: &str) -> Result<Vec<CheckpointSummary>, JobsError> {
        let location = self.record(id)?.checkpoints;
        let Some(location) = location else {
            return Ok(Vec::new());
        };
        let unreadable = |e: crate::checkpoint::StoreError| JobsError::Table {
            path: location.clone(),
            message: e.to_string(),
        };
        let store = CheckpointStore::at(&location).map_err(unreadable)?;
        let list = store.list().await.map_err(unreadable)?;
        Ok(list
            .iter()
            .map(|m| CheckpointSummary {
                id: m.epoch,
                kind: m.kind.as_str(),
                created_ms: m.created_ms,
                duration_ms: m.duration_ms,
                bytes: m.state_bytes,
                staged_rows: m.staged_rows(),
            })
            .collect())
    }

    /// The job's dataflow as `sluice explain` prints it (planned again from its SQL).
    pub async fn explain_job(&self, id: &str) -> Result<String, JobsError> {
        let record = self.record(id)?;
        let script = Script {
            name: format!("{}.sql", record.name),
            text: record.sql,
            variables: Some(record.variables),
        };
        self.explain(&script).await
    }

    fn record(&self, id: &str) -> Result<JobRecord, JobsError> {
        self.lock()
            .get(id)
            .map(|e| e.record.clone())
            .ok_or_else(|| JobsError::NotFound(id.to_string()))
    }

    /// Cancels the job if it runs, and forgets it and its checkpoints.
    pub fn delete(&self, id: &str) -> Result<(), JobsError> {
        let mut jobs = self.lock();
        let entry = jobs
            .remove(id)
            .ok_or_else(|| JobsError::NotFound(id.to_string()))?;
        if let Some(task) = entry.task {
            task.abort();
        }
        self.save(&jobs);
        let _ = std::fs::remove_dir_all(self.inner.state_dir.join("checkpoints").join(id));
        Ok(())
    }

    fn with_entry(&self, id: &str, f: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.lock().get_mut(id) {
            f(entry);
        }
    }
}

impl Entry {
    fn new(record: JobRecord) -> Self {
        Entry {
            record,
            followers: broadcast::channel(256).0,
            stop: None,
            drain: Arc::default(),
            task: None,
            metrics: None,
            started_ms: None,
            history: History::default(),
            log: VecDeque::new(),
        }
    }

    /// The job as the API shows it; `detail` adds its dataflow and history.
    fn view(&self, detail: bool) -> JobView {
        let m = self.metrics.as_ref();
        let now = chrono::Utc::now().timestamp_millis();
        let sample = m.map(|m| Sample::of(m, now));
        let active = self.record.status.is_active();
        let rates = sample
            .as_ref()
            .filter(|_| active)
            .and_then(|s| self.history.rates(s));
        let mut record = self.record.clone();
        let masker = Masker::new(&record.sql, &record.variables);
        record.sql = masker.text(&mask_sql(&record.sql));
        record.variables = mask_variables(&record.variables);
        record.error = record.error.map(|e| masker.text(&e));
        JobView {
            record,
            uptime_s: self
                .started_ms
                .filter(|_| active)
                .map(|t| ((now - t).max(0) / 1000) as u64),
            rows_in: sample.map_or(0, |s| s.rows_in),
            rows_out: sample.map_or(0, |s| s.rows_out),
            rows_in_per_s: rates.map(|r| r.0),
            rows_out_per_s: rates.map(|r| r.1),
            watermark_ms: sample.and_then(|s| s.watermark_ms),
            lag: sample.and_then(|s| s.lag),
            last_checkpoint: m.and_then(|m| m.checkpoints.last()).map(|c| c.describe()),
            checkpoint: m.and_then(CheckpointFigures::of),
            log: self.log.iter().map(|l| masker.text(l)).collect(),
            dataflow: m.filter(|_| detail).map(Dataflow::of),
            history: detail.then(|| self.history.samples()),
        }
    }
}

/// Samples every running job's counters until the manager is dropped.
async fn sample_jobs(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let now = chrono::Utc::now().timestamp_millis();
        let mut jobs = inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        for entry in jobs.values_mut() {
            if let (true, Some(m)) = (entry.record.status.is_active(), &entry.metrics) {
                let sample = Sample::of(m, now);
                entry.history.push(sample);
            }
        }
    }
}

fn set_status(entry: &mut Entry, status: JobStatus, error: Option<String>) {
    entry.record.status = status;
    entry.record.updated_ms = chrono::Utc::now().timestamp_millis();
    if error.is_some() || status == JobStatus::Running {
        entry.record.error = error;
    }
}

/// A job's [`JobLog`]: lines into its entry (and the server's log), restarts into its status.
struct EntryLog {
    manager: JobManager,
    id: String,
}

impl JobLog for EntryLog {
    fn line(&mut self, text: &str) {
        let restarting = text.contains("restarting from the last checkpoint");
        let mut shown = text.to_string();
        self.manager.with_entry(&self.id, |e| {
            shown = Masker::new(&e.record.sql, &e.record.variables).text(text);
            if e.log.len() == LOG_LINES {
                e.log.pop_front();
            }
            e.log.push_back(shown.clone());
            let _ = e.followers.send(LogEvent::Line(shown.clone()));
            if restarting {
                set_status(e, JobStatus::Restarting, Some(shown.clone()));
            }
        });
        tracing::info!(job = %self.id, "{shown}");
    }

    fn running(&mut self, metrics: &JobMetrics) {
        let metrics = metrics.clone();
        self.manager.with_entry(&self.id, |e| {
            e.record.checkpoints = metrics.checkpoints.location();
            e.metrics = Some(metrics);
            e.started_ms = Some(chrono::Utc::now().timestamp_millis());
            e.history = History::default();
            if e.record.status == JobStatus::Restarting {
                e.record.status = JobStatus::Running;
            }
        });
    }
}

fn masker(script: &Script) -> Masker {
    Masker::new(
        &script.text,
        script.variables.as_ref().unwrap_or(&BTreeMap::new()),
    )
}

/// A short random id: 12 hex digits.
fn new_id() -> String {
    use rand::Rng;
    format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff)
}
