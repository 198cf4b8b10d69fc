//! A shell session: statements run one at a time against one catalog, as in Flink's SQL client.
//! DDL and `SET` change the session; `SHOW`, `DESCRIBE`, `EXPLAIN` answer from it; an `INSERT`
//! becomes a job whose script is the session's DDL and settings so far plus the `INSERT`, run
//! by the session's job manager (inside the shell).

use super::backend::Jobs;
use crate::jobs::StopMode;
use crate::plan::JobGraph;
use crate::runtime::RuntimeOptions;
use crate::sql::ast::{ShowKind, Statement};
use std::collections::BTreeMap;

use crate::sql::planner::{ClientSettings, Settings, Vocabulary};
use crate::sql::{Planner, parse_script};

/// What a statement asks of the shell.
pub enum Reply {
    /// Text to print (maybe empty).
    Text(String),
    /// A query to show live (see [`super::results`]).
    Query(JobGraph),
    /// A query for the server to run, its rows streamed back: the session's DDL and settings
    /// plus the `SELECT`.
    ServerQuery(String),
    /// `QUIT` / `EXIT`.
    Quit,
    /// `CLEAR`: the screen.
    Clear,
}

pub struct Session {
    planner: Planner,
    /// The statements that shaped the catalog and settings, in order (variables substituted):
    /// a job's script starts with them.
    preamble: Vec<String>,
    jobs: Jobs,
    /// How queries shown in the shell run.
    pub options: RuntimeOptions,
    /// Whether only DDL and `SET` are allowed (Flink's `-i` init files).
    pub init_only: bool,
    /// Where each key set in the session was set: `session` (typed) or `file:line`.
    origins: BTreeMap<String, String>,
    /// `sluice.yaml`'s settings (jobs inside the shell take them; a `SET` wins).
    config_settings: Vec<(String, String)>,
}

pub const HELP: &str = "\
Statements end with `;` and may span lines.
  CREATE TABLE / VIEW …;  DROP TABLE / VIEW …;   the session's catalog
  SET 'key' = 'value';  SET;  RESET ['key'];      settings (SET; lists them, with sources)
  SHOW TABLES | VIEWS | FUNCTIONS | JOBS;  DESCRIBE t;  EXPLAIN stmt;
  SELECT …;                                       rows as they come; Ctrl-C stops
  SET 'sql-client.execution.result-mode' = 'table';   results on a screen of their own (Q quits)
  INSERT INTO … ;  EXECUTE STATEMENT SET BEGIN … END;   run as a job
  STOP JOB 'id' [WITH SAVEPOINT] [WITH DRAIN];    stop a job (without: at once)
  HELP;  CLEAR;  QUIT; (or Ctrl-D)
Tab completes; Ctrl-C clears the line.";

/// Where a statement was given: `session` when typed, else `file:line`.
fn origin(input: &str, line: u64) -> String {
    if input == "input" {
        "session".to_string()
    } else {
        format!("{input}:{line}")
    }
}

impl Session {
    /// A session whose jobs `jobs` run; `config_settings` are `sluice.yaml`'s for them.
    pub fn new(
        jobs: Jobs,
        options: RuntimeOptions,
        config_settings: Vec<(String, String)>,
    ) -> Self {
        Session {
            planner: Planner::new(),
            preamble: Vec::new(),
            jobs,
            options,
            init_only: false,
            origins: BTreeMap::new(),
            config_settings,
        }
    }

    /// How results are shown: the `sql-client.*` settings in force.
    pub fn display(&self) -> &ClientSettings {
        &self.planner.settings().client
    }

    /// What the editor completes from the catalog.
    pub fn vocabulary(&self) -> Vocabulary {
        self.planner.vocabulary()
    }

    /// Runs one statement. `name` names the input in errors (`input`, or a file); `text` may be
    /// padded so that positions are the file's.
    pub async fn execute(&mut self, name: &str, text: &str) -> Result<Reply, String> {
        let word = text
            .trim()
            .trim_end_matches(';')
            .trim()
            .to_ascii_uppercase();
        match word.as_str() {
            "HELP" => return Ok(Reply::Text(HELP.to_string())),
            "QUIT" | "EXIT" => return Ok(Reply::Quit),
            "CLEAR" => return Ok(Reply::Clear),
            _ => {}
        }
        let script = parse_script(name, text).map_err(|e| e.to_string())?;
        let Some(statement) = script.statements.first() else {
            return Ok(Reply::Text(String::new()));
        };
        let shapes_session = matches!(
            statement.node,
            Statement::Set { .. }
                | Statement::Reset { .. }
                | Statement::CreateTable(_)
                | Statement::CreateView { .. }
                | Statement::Drop { .. }
        );
        if self.init_only && !shapes_session {
            return Err(format!(
                "{name}: an init file holds DDL and SET only (queries, INSERTs and commands come after it)"
            ));
        }
        match &statement.node {
            Statement::Show(ShowKind::Settings) => return Ok(Reply::Text(self.list_settings())),
            Statement::Show(ShowKind::Jobs) => return Ok(Reply::Text(self.show_jobs().await?)),
            Statement::StopJob {
                id,
                with_savepoint,
                with_drain,
            } => {
                // Flink's WITH DRAIN ends event time first, so every window is emitted.
                let (mode, how) = match (with_savepoint, with_drain) {
                    (_, true) => (
                        StopMode::Drain,
                        "draining (every window emitted), then a final checkpoint",
                    ),
                    (true, false) => (StopMode::Savepoint, "stopping with a savepoint"),
                    (false, false) => (StopMode::Cancel, "canceled"),
                };
                let job = self.jobs.stop(id, mode).await?;
                return Ok(Reply::Text(format!("job {id} `{job}`: {how}")));
            }
            _ => {}
        }
        // Planned here first, also an INSERT: its mistakes are shown where they were typed.
        let planned = self
            .planner
            .plan_script(&script)
            .await
            .map_err(|e| e.to_string())?;
        if matches!(
            statement.node,
            Statement::Insert(_) | Statement::StatementSet(_)
        ) {
            return self.submit(name, &script.source.text).await;
        }
        if let (Statement::Query(_), Some(job)) = (&statement.node, planned.job) {
            if self.jobs.is_local() {
                return Ok(Reply::Query(job));
            }
            return Ok(Reply::ServerQuery(self.script_with(&script.source.text)));
        }
        if shapes_session {
            self.preamble.push(script.source.text.trim().to_string());
            self.note_origin(&statement.node, origin(name, statement.pos.line));
        }
        Ok(Reply::Text(
            if planned.output.is_empty() && shapes_session {
                "[INFO] Execute statement succeeded.".to_string()
            } else {
                planned.output.join("\n")
            },
        ))
    }

    /// The session's DDL and settings plus the `INSERT` as one job.
    async fn submit(&mut self, name: &str, insert: &str) -> Result<Reply, String> {
        let sql = self.script_with(insert);
        let job_name = format!("shell-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S%.3f"));
        let id = self
            .jobs
            .submit(job_name, sql)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        Ok(Reply::Text(format!(
            "[INFO] Submitting SQL update statement to the cluster...\n[INFO] SQL update statement has been successfully submitted to the cluster:\nJob ID: {id}"
        )))
    }

    /// Remembers where a `SET` came from; a `RESET` forgets.
    fn note_origin(&mut self, statement: &Statement, origin: String) {
        match statement {
            Statement::Set { key, .. } => {
                self.origins.insert(key.clone(), origin);
            }
            Statement::Reset { key: Some(key) } => {
                self.origins.remove(key);
            }
            Statement::Reset { key: None } => self.origins.clear(),
            _ => {}
        }
    }

    /// `SET;`: every key with its value in force and where that comes from — a `SET` (typed,
    /// or a file's line), `sluice.yaml`, or the default.
    fn list_settings(&self) -> String {
        let given = self.planner.settings().values();
        let mut rows: Vec<[String; 3]> = Vec::new();
        for key in Settings::keys() {
            let configured = self.config_settings.iter().find(|(k, _)| k == key);
            let (value, source) = match (given.get(key), configured) {
                (Some(v), _) => (
                    v.clone(),
                    self.origins.get(key).cloned().unwrap_or_default(),
                ),
                (None, Some((_, v))) => (v.clone(), "sluice.yaml".to_string()),
                (None, None) => (Settings::about(key).0.to_string(), "default".to_string()),
            };
            rows.push([key.to_string(), value, source]);
        }
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let (key_width, value_width) = (width(0), width(1).max(5));
        let mut out = format!("{:<key_width$}  {:<value_width$}  source", "key", "value");
        for [key, value, source] in &rows {
            out.push_str(&format!(
                "\n{key:<key_width$}  {value:<value_width$}  {source}"
            ));
        }
        out
    }

    /// The session's DDL and settings so far, then `statement`.
    fn script_with(&self, statement: &str) -> String {
        let mut sql = self.preamble.join("\n");
        sql.push('\n');
        sql.push_str(statement.trim());
        sql
    }

    /// The rows of a query the server runs (see [`Reply::ServerQuery`]).
    pub async fn server_preview(&self, sql: String) -> Result<reqwest::Response, String> {
        self.jobs.preview(sql).await
    }

    async fn show_jobs(&self) -> Result<String, String> {
        let mut out = format!(
            "{:<14} {:<26} {:<10} {:>12} {:>12}",
            "job id", "job name", "status", "rows in", "rows out"
        );
        for j in self.jobs.list().await? {
            out.push_str(&format!(
                "\n{:<14} {:<26} {:<10} {:>12} {:>12}",
                j.id, j.name, j.status, j.rows_in, j.rows_out
            ));
        }
        Ok(out)
    }

    /// Jobs of this shell still running (none when they run on a server: they outlive it).
    pub async fn running_jobs(&self) -> Vec<String> {
        if !self.jobs.is_local() {
            return Vec::new();
        }
        let active = ["CREATED", "RUNNING", "RESTARTING"];
        self.jobs
            .list()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|j| active.contains(&j.status.as_str()))
            .map(|j| j.id)
            .collect()
    }

    /// Stops every job running inside the shell with a savepoint and waits until they have
    /// stopped; says which.
    pub async fn stop_jobs(&self) -> Vec<String> {
        let ids = self.running_jobs().await;
        for id in &ids {
            let _ = self.jobs.stop(id, StopMode::Savepoint).await;
        }
        while self.running_jobs().await.iter().any(|id| ids.contains(id)) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        ids
    }

    /// Waits until no job of the shell runs (a `-f` script's jobs, as `sluice run` would).
    pub async fn wait_for_jobs(&self) {
        while !self.running_jobs().await.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
