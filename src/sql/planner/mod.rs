//! From statements to a runnable [`JobGraph`].
//!
//! DDL fills the catalog; each `INSERT` (and a bare `SELECT`, which prints) is planned by
//! DataFusion's SQL planner (`SqlToRel` through a `SessionState`), analyzed (type coercion, view
//! inlining) and optimized, and the optimized logical plan is then translated into our streaming
//! operators: a table scan becomes a shared source, filters and projections become compiled
//! physical expressions. Everything is built once, here; nothing is planned per batch, and
//! planning reads no data (lookup tables are read when the job starts).
//!
//! `ddl` applies catalog statements, `settings` holds SET values typed, `insert` plans INSERTs
//! and queries, `compile` turns logical plans into operators (with `window`, `match_recognize`
//! and `join` for those nodes), and `job_builder` assembles the job graph, passed explicitly.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::Optimizer;
use datafusion::prelude::{SessionConfig, SessionContext};

mod compile;
mod ddl;
mod group;
mod insert;
mod job_builder;
mod join;
mod match_recognize;
mod over;
mod rank;
mod settings;
mod stream_join;
mod window;

pub use ddl::Vocabulary;
pub use settings::{ClientSettings, LateRows, ResultMode, Settings};

use compile::{CompiledStream, ExprCompiler, column_selection};
use job_builder::{JobBuilder, job_name};

use super::ast::{Located, Script, ShowKind, Statement, TemporalRef};
use super::catalog::Table;
use super::error::{Position, SourceText, SqlError};
use super::functions::{self};
use super::window::WindowTvf;
use crate::operators::match_recognize::MatchRecognizeDef;
use crate::plan::JobGraph;

/// Plans scripts against a catalog that lives as long as the planner (a shell session keeps one).
pub struct Planner {
    ctx: SessionContext,
    tables: BTreeMap<String, Arc<Table>>,
    /// Views with their column names.
    views: BTreeMap<String, Vec<String>>,
    settings: Settings,
    /// Window TVF relations registered so far, with the plan of their input.
    windows: BTreeMap<String, (WindowTvf, LogicalPlan)>,
    /// MATCH_RECOGNIZE relations registered so far: the plan, its input, where it is written.
    matches: BTreeMap<String, (Arc<MatchRecognizeDef>, LogicalPlan, Position)>,
    /// The `FOR SYSTEM_TIME AS OF` clauses of the statement being planned.
    temporal: Vec<TemporalRef>,
    local_paths: Vec<LocalPath>,
}

/// What a script asks to run: the job graph (if it has INSERTs or queries) and its settings.
pub struct PlannedScript {
    /// What its SHOW, DESCRIBE and EXPLAIN statements print, in order.
    pub output: Vec<String>,
    pub job: Option<JobGraph>,
    pub settings: Settings,
    /// The local paths its tables read or write, for a server that limits them.
    pub local_paths: Vec<LocalPath>,
}

/// A local path a table declares (`'connector' = 'filesystem'`).
#[derive(Debug, Clone)]
pub struct LocalPath {
    pub table: String,
    pub path: String,
    /// Where its `'path'` option is written (an error without its message yet).
    pub at: SqlError,
}

impl PlannedScript {
    /// The job's dataflow as `sluice explain` shows it, in the user's names.
    pub fn explain(&self) -> Option<String> {
        self.job.as_ref().map(|job| {
            let workers = if self.settings.workers {
                job.explain_workers()
            } else {
                String::new()
            };
            user_facing(&format!("{workers}{}", job.explain()))
        })
    }
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

impl Planner {
    pub fn new() -> Self {
        let mut config = SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false);
        let opts = config.options_mut();
        // Flink identifiers are case-sensitive: `speedKmh` must stay `speedKmh`.
        opts.sql_parser.enable_ident_normalization = false;
        opts.sql_parser.map_string_types_to_utf8view = false;
        opts.sql_parser.collect_spans = true;
        // A lone COUNT(DISTINCT x) must stay one aggregation over the window, not become the
        // batch engine's two-level GROUP BY (which a stream cannot run as one window).
        let rules = Optimizer::new()
            .rules
            .into_iter()
            .filter(|r| r.name() != "single_distinct_aggregation_to_group_by")
            .collect();
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_optimizer_rules(rules)
            .build();
        Planner {
            ctx: {
                let ctx = SessionContext::new_with_state(state);
                functions::register(&ctx);
                ctx
            },
            tables: BTreeMap::new(),
            views: BTreeMap::new(),
            settings: Settings::default(),
            windows: BTreeMap::new(),
            matches: BTreeMap::new(),
            temporal: Vec::new(),
            local_paths: Vec::new(),
        }
    }

    fn state(&self) -> SessionState {
        self.ctx.state()
    }

    pub fn tables(&self) -> &BTreeMap<String, Arc<Table>> {
        &self.tables
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Plans a whole script: DDL is applied in order, and every INSERT and query becomes part of
    /// one job, sharing the scans of tables they have in common.
    pub async fn plan_script(&mut self, script: &Script) -> Result<PlannedScript, SqlError> {
        let src = &script.source;
        let mut job = JobBuilder::default();
        let mut output = Vec::new();
        // The last statement that runs: settings that do not fit together are reported there.
        let mut last_runnable = None;
        // Where the job was made a job of several workers: reported there when it cannot be.
        let mut workers_set = None;
        for (i, stmt) in script.statements.iter().enumerate() {
            if let Statement::Set { key, .. } = &stmt.node
                && key == "sluice.workers"
            {
                workers_set = Some(stmt.pos);
            }
            self.register_matches(src, &script.matches, i).await?;
            self.register_windows(src, &script.windows).await?;
            self.temporal = script
                .temporal
                .iter()
                .filter(|t| t.statement == i)
                .cloned()
                .collect();
            match &stmt.node {
                Statement::Explain(inner) => {
                    if !matches!(
                        inner.node,
                        Statement::Insert(_) | Statement::StatementSet(_) | Statement::Query(_)
                    ) {
                        return Err(src.error(
                            inner.pos,
                            "EXPLAIN takes an INSERT INTO, a statement set or a query",
                        ));
                    }
                    let mut alone = JobBuilder::default();
                    self.plan_runnable(src, inner, &mut alone).await?;
                    let mini_batch = self.mini_batch(src, inner.pos)?;
                    if let Some(job) = alone.build(
                        job_name(&src.name),
                        self.settings.idle_timeout,
                        mini_batch,
                        self.settings.parallelism(),
                        self.settings.two_phase,
                    ) {
                        output.push(user_facing(&job.explain()));
                    }
                }
                Statement::Show(ShowKind::Jobs) | Statement::StopJob { .. } => {
                    return Err(src.error(
                        stmt.pos,
                        "SHOW JOBS and STOP JOB are shell commands: run the file with `sluice shell -f`, or use `sluice jobs` and `sluice stop JOB` against a job server, or Ctrl-C for `sluice run`",
                    ));
                }
                Statement::Show(kind) => output.push(self.show(*kind)),
                Statement::Describe(name) => match self.describe(name) {
                    Some(text) => output.push(text),
                    None => {
                        return Err(src.error(stmt.pos, format!("there is no table `{name}`")));
                    }
                },
                _ => {
                    self.plan_runnable(src, stmt, &mut job).await?;
                    if matches!(
                        stmt.node,
                        Statement::Insert(_) | Statement::StatementSet(_) | Statement::Query(_)
                    ) {
                        last_runnable = Some(stmt.pos);
                    }
                }
            }
        }
        let mini_batch = match last_runnable {
            Some(pos) => self.mini_batch(src, pos)?,
            None => None,
        };
        let name = self
            .settings
            .pipeline_name
            .clone()
            .unwrap_or_else(|| job_name(&src.name));
        let job = job.build(
            name,
            self.settings.idle_timeout,
            mini_batch,
            self.settings.parallelism(),
            self.settings.two_phase,
        );
        if let (Some(job), Some(pos), true) = (&job, workers_set, self.settings.workers)
            && let Some(problem) = job.worker_problem()
        {
            return Err(src.error(pos, format!("'sluice.workers' = 'kafka-group': {problem}")));
        }
        Ok(PlannedScript {
            output,
            job,
            settings: self.settings.clone(),
            local_paths: std::mem::take(&mut self.local_paths),
        })
    }

    /// The mini-batch settings in force, checked as a whole for the statement at `pos`.
    fn mini_batch(
        &self,
        src: &SourceText,
        pos: Position,
    ) -> Result<Option<crate::plan::MiniBatch>, SqlError> {
        self.settings.mini_batch().map_err(|e| src.error(pos, e))
    }

    /// Adds an INSERT, statement set or query to `job`; applies any other statement to the
    /// catalog.
    async fn plan_runnable(
        &mut self,
        src: &SourceText,
        stmt: &Located<Statement>,
        job: &mut JobBuilder,
    ) -> Result<(), SqlError> {
        match &stmt.node {
            Statement::Insert(insert) => self.plan_insert(src, insert, stmt.pos, job).await,
            Statement::StatementSet(inserts) => {
                for insert in inserts {
                    self.plan_insert(src, &insert.node, insert.pos, job).await?;
                }
                Ok(())
            }
            Statement::Query(query) => self.plan_query_to_print(src, query, stmt.pos, job).await,
            _ => self.apply_ddl(src, stmt).await,
        }
    }
}

/// Plan text without the relations the parser invents for window TVFs and MATCH_RECOGNIZE
/// (`max(__window_0.driver_id)` → `max(driver_id)`) and with COUNT(*) as written (DataFusion
/// shows `count(Int64(1))`): EXPLAIN speaks the user's names.
pub fn user_facing(text: &str) -> String {
    static INTERNAL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"__(window|match)_\d+\.").expect("a valid pattern")
    });
    INTERNAL
        .replace_all(text, "")
        .replace("count(Int64(1))", "count(*)")
}

/// A constant interval without months (`INTERVAL '20' SECOND` as DataFusion holds it), in
/// milliseconds.
fn interval_millis(v: &datafusion::common::ScalarValue) -> Option<i64> {
    use datafusion::common::ScalarValue;
    match v {
        ScalarValue::IntervalDayTime(Some(d)) => {
            Some(i64::from(d.days) * 86_400_000 + i64::from(d.milliseconds))
        }
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            Some(i64::from(i.days) * 86_400_000 + i.nanoseconds / 1_000_000)
        }
        _ => None,
    }
}

/// A DataFusion planning error, positioned at its span when DataFusion knows it.
fn df_error(src: &SourceText, e: DataFusionError, fallback: Position) -> SqlError {
    let pos = e
        .diagnostic()
        .and_then(|d| d.span)
        .map(|s| Position {
            line: s.start.line,
            column: s.start.column,
        })
        .filter(|p| p.line > 0)
        .unwrap_or(fallback);
    let text = e.strip_backtrace();
    let text = text
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("Schema error: ")
        .trim_start_matches("This feature is not implemented: ")
        .to_string();
    src.error(pos, text)
}
