//! Helpers shared by the integration tests: running the real `sluice` binary and comparing
//! CSV results with Flink's golden files.

#![allow(dead_code)]

pub mod job_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs `sluice <args>` with extra environment variables, successful or not. Each run has a
/// data directory of its own, so default checkpoints never carry over between tests.
pub fn sluice_any(args: &[&str], env: &[(&str, &str)]) -> Output {
    let data = tempfile::tempdir().expect("a temporary directory");
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("XDG_DATA_HOME", data.path())
        .envs(env.iter().copied())
        .output()
        .expect("the sluice binary runs")
}

/// Starts `sluice run --quiet <args> <sql>` with `data` as its data directory (where default
/// checkpoints go), stderr piped.
pub fn spawn_run(sql: &Path, data: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--quiet"])
        .args(args)
        .arg(sql)
        .env("XDG_DATA_HOME", data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the sluice binary runs")
}

/// Applies one printed change (`+I[…]`, `-U[…]`, `+U[…]`, `-D[…]`) to `rows`: `+I`/`+U` add
/// the row, `-U`/`-D` take back one shown before (a retraction of a row never shown fails).
pub fn apply_change(rows: &mut Vec<String>, line: &str) {
    let (kind, row) = line.split_at(2);
    match kind {
        "+I" | "+U" => rows.push(row.to_string()),
        "-U" | "-D" => {
            let at = rows.iter().position(|r| r == row);
            rows.swap_remove(at.unwrap_or_else(|| panic!("{line} takes back a row never shown")));
        }
        other => panic!("not a changelog row ({other}): {line}"),
    }
}

/// Starts `sluice run --quiet <sql>` with `data` as its data directory, and the lines it prints
/// as they come (a thread reads its stdout). Kill the child when done.
pub fn spawn_run_printing(
    sql: &Path,
    data: &Path,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--quiet"])
        .arg(sql)
        .env("XDG_DATA_HOME", data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the sluice binary runs");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Runs `sluice <args>` with extra environment variables; panics with its output on failure.
pub fn sluice(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = sluice_any(args, env);
    assert!(
        out.status.success(),
        "sluice {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A script run through the real binary over files in a directory of its own: JSON-lines input
/// tables, CSV output tables, then the statements under test. The one way the integration tests
/// build such a run.
pub struct Pipeline {
    dir: tempfile::TempDir,
    tables: Vec<String>,
    batch_size: usize,
}

/// What a [`Pipeline`] run did.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    /// The pipeline's files, kept until the run is dropped.
    dir: tempfile::TempDir,
}

impl Pipeline {
    pub fn new() -> Self {
        Pipeline {
            dir: tempfile::tempdir().expect("a temporary directory"),
            tables: Vec::new(),
            batch_size: 8192,
        }
    }

    /// The directory the pipeline's files live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A filesystem JSON table `name (columns)` holding `rows` (JSON lines); `columns` may end
    /// with a WATERMARK.
    pub fn input(mut self, name: &str, columns: &str, rows: &str) -> Self {
        let path = self.dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&path, rows).expect("the input is written");
        self.tables.push(format!(
            "CREATE TABLE {name} ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
            path.display()
        ));
        self
    }

    /// Any other statement to run before the ones under test (a table of another connector).
    pub fn table(mut self, ddl: &str) -> Self {
        self.tables.push(ddl.to_string());
        self
    }

    /// A CSV filesystem table `name (columns)` to insert into; [`Run::rows`] reads it back.
    pub fn output(mut self, name: &str, columns: &str) -> Self {
        let path = self.dir.path().join(name);
        self.tables.push(format!(
            "CREATE TABLE {name} ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');",
            path.display()
        ));
        self
    }

    /// Rows per batch sources aim for: 1 makes every row's watermark arrive before the next row.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows;
        self
    }

    /// Runs the tables' DDL followed by `statements`, successful or not.
    pub fn run(self, statements: &str) -> Run {
        let dir = self.dir.path();
        let sql = format!("{}\n{statements}", self.tables.join("\n"));
        let out = run_script(dir, &sql, self.batch_size);
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            dir: self.dir,
        }
    }
}

impl Run {
    /// The rows written to output table `name`, sorted; panics with stderr if the run failed.
    pub fn rows(&self, name: &str) -> Vec<String> {
        assert!(self.ok, "the run failed:\n{}", self.stderr);
        let mut rows = read_sink_dir(&self.dir.path().join(name));
        rows.sort();
        rows
    }

    /// The error the run failed with; panics if it succeeded.
    pub fn error(&self) -> &str {
        assert!(!self.ok, "the run succeeded:\n{}", self.stderr);
        &self.stderr
    }
}

/// Writes `sql` to `dir/q.sql` and runs it with `runtime.batch_size` set, successful or not.
pub fn run_script(dir: &Path, sql: &str, batch_size: usize) -> Output {
    let sql_path = dir.join("q.sql");
    std::fs::write(&sql_path, sql).unwrap();
    let config = dir.join("sluice.yaml");
    std::fs::write(&config, format!("runtime:\n  batch_size: {batch_size}\n")).unwrap();
    sluice_any(
        &[
            "run",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
            sql_path.to_str().unwrap(),
        ],
        &[],
    )
}

/// Every line of every visible part file in a sink directory.
pub fn read_sink_dir(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("sink directory exists")
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    for f in files {
        lines.extend(
            std::fs::read_to_string(&f)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    lines
}

/// Compares CSV rows with a golden CSV (header skipped), order-insensitive: rows are sorted, and
/// fields that parse as numbers must agree within a relative tolerance of 1e-9 (Flink sums
/// partial aggregates in an order of its own).
pub fn assert_rows_match_golden(actual: &[String], golden_csv: &Path) {
    let golden_text = std::fs::read_to_string(golden_csv).expect("golden file");
    let mut expected: Vec<Vec<String>> = golden_text.lines().skip(1).map(split_csv).collect();
    let mut got: Vec<Vec<String>> = actual.iter().map(|l| split_csv(l)).collect();
    expected.sort();
    got.sort();
    assert_eq!(
        got.len(),
        expected.len(),
        "row count differs from {}",
        golden_csv.display()
    );
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(
            g.len(),
            e.len(),
            "row {i}: column count\n got: {g:?}\nwant: {e:?}"
        );
        for (a, b) in g.iter().zip(e) {
            let same = match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x == y || ((x - y).abs() <= 1e-9 * x.abs().max(y.abs())),
                _ => a == b,
            };
            assert!(
                same,
                "row {i} differs from {}:\n got: {g:?}\nwant: {e:?}",
                golden_csv.display()
            );
        }
    }
}

/// Splits a CSV line (fields may be double-quoted).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// The broker started by `scripts/test.sh`. Without one the test is skipped locally, but under
/// `CI=true` a missing broker is a failure, never a silent skip.
pub fn test_broker() -> Option<String> {
    match std::env::var("SLUICE_TEST_KAFKA") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but SLUICE_TEST_KAFKA is not set: run the suite with scripts/test.sh")
        }
        _ => {
            eprintln!("skipping: no broker (run scripts/test.sh, or set SLUICE_TEST_KAFKA)");
            None
        }
    }
}

/// The test ClickHouse's HTTP URL (started by scripts/test.sh); `None` (skip) outside CI.
pub fn test_clickhouse() -> Option<String> {
    match std::env::var("SLUICE_TEST_CLICKHOUSE") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but SLUICE_TEST_CLICKHOUSE is not set: run the suite with scripts/test.sh"
        ),
        _ => {
            eprintln!(
                "skipping: no ClickHouse (run scripts/test.sh, or set SLUICE_TEST_CLICKHOUSE)"
            );
            None
        }
    }
}

/// Runs a ClickHouse statement over HTTP; returns its TabSeparated output.
pub async fn clickhouse_query(url: &str, sql: &str) -> String {
    let client = clickhouse::Client::default().with_url(url);
    let bytes = client
        .query(sql)
        .fetch_bytes("TabSeparated")
        .unwrap()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Runs a ClickHouse statement that returns nothing.
/// A table's rows in a stable order, duplicates kept: no FINAL, no DISTINCT.
pub async fn clickhouse_table(url: &str, db: &str, name: &str) -> Vec<String> {
    let text = clickhouse_query(
        url,
        &format!("SELECT * FROM {db}.{name} ORDER BY ALL SETTINGS session_timezone = 'UTC'"),
    )
    .await;
    text.lines().map(str::to_string).collect()
}

/// A table's row count.
pub async fn clickhouse_count(url: &str, db: &str, name: &str) -> u64 {
    clickhouse_query(url, &format!("SELECT count() FROM {db}.{name}"))
        .await
        .trim()
        .parse()
        .unwrap_or(0)
}

pub async fn clickhouse_execute(url: &str, sql: &str) {
    clickhouse::Client::default()
        .with_url(url)
        .query(sql)
        .execute()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A file of `pipelines/`.
pub fn pipeline_text(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pipelines")
            .join(name),
    )
    .unwrap()
}

/// `sql` with the WITH clause of every Kafka or ClickHouse table replaced by what `swap` returns
/// for (table name, connector); `None` keeps the clause. How the tests run the shipped pipeline
/// files over a generated file instead of a broker, or into files instead of ClickHouse.
pub fn swap_connectors(sql: &str, swap: impl Fn(&str, &str) -> Option<String>) -> String {
    let with = regex::Regex::new(
        r"(?s)CREATE TABLE (\w+) \((.*?)\n\) WITH \(\s*'connector' = '(kafka|clickhouse)',.*?\n\);",
    )
    .unwrap();
    with.replace_all(sql, |c: &regex::Captures| match swap(&c[1], &c[3]) {
        Some(options) => format!("CREATE TABLE {} ({}\n) WITH ({options});", &c[1], &c[2]),
        None => c[0].to_string(),
    })
    .into_owned()
}

/// Creates `sql/schema.sql` in ClickHouse under the database name `database` (dropped first), so
/// tests running at the same time each have their own.
pub async fn apply_fleet_schema(url: &str, database: &str) {
    clickhouse_execute(url, &format!("DROP DATABASE IF EXISTS {database}")).await;
    let schema =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/schema.sql"))
            .unwrap();
    // Comment lines out first: they may contain `;`.
    let schema: String = schema
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace(
            "DATABASE IF NOT EXISTS fleet;",
            &format!("DATABASE IF NOT EXISTS {database};"),
        )
        .replace("fleet.", &format!("{database}."));
    for stmt in schema.split(';').filter(|s| !s.trim().is_empty()) {
        clickhouse_execute(url, stmt).await;
    }
}

/// The outputs of [`recovery_job`].
pub const RECOVERY_OUTPUTS: [&str; 7] = [
    "passthrough",
    "tumble",
    "hop",
    "session",
    "braking",
    "fastest",
    "fleet_minute",
];

/// Every output of [`recovery_job`] written as CSV under `out`: its rows sorted, duplicates kept.
pub fn recovery_outputs(out: &Path) -> std::collections::BTreeMap<&'static str, Vec<String>> {
    RECOVERY_OUTPUTS
        .iter()
        .map(|name| {
            let dir = out.join(name);
            let mut rows = if dir.exists() {
                read_sink_dir(&dir)
            } else {
                Vec::new()
            };
            rows.sort();
            (*name, rows)
        })
        .collect()
}

/// The job the recovery tests kill and restart: telemetry (WITH `source`, watermark 5 s behind,
/// more than the simulator's disorder, so no row is ever late) into seven tables (WITH
/// `sink(name)`): a pass-through, TUMBLE, HOP, SESSION, MATCH_RECOGNIZE, a window Top-N over an
/// aggregate per vehicle (two stages with an exchange by window), and a fleet-wide TUMBLE
/// (two phases: local aggregates on every subtask, merged by one global).
/// `extra` (SET statements) goes first.
pub fn recovery_job(source: &str, sink: &dyn Fn(&str) -> String, extra: &str) -> String {
    recovery_job_of(&RECOVERY_OUTPUTS, source, sink, extra)
}

/// [`recovery_job`] with only the `outputs` named.
pub fn recovery_job_of(
    outputs: &[&str],
    source: &str,
    sink: &dyn Fn(&str) -> String,
    extra: &str,
) -> String {
    let mut sql = format!(
        "{extra}
CREATE TABLE telemetry (
  vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE, accel_ms2 DOUBLE, event_type STRING,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ({source});
"
    );
    let chosen = RECOVERY_QUERIES
        .iter()
        .filter(|(name, _, _)| outputs.contains(name));
    for (name, cols, _) in chosen.clone() {
        sql += &format!("CREATE TABLE {name} ({cols}) WITH ({});\n", sink(name));
    }
    for (name, _, query) in chosen {
        sql += &format!("INSERT INTO {name} {query};\n");
    }
    sql
}

/// Each output of [`recovery_job`]: its name, its columns, the query that fills it.
const RECOVERY_QUERIES: [(&str, &str, &str); 9] = [
    (
        "passthrough",
        "vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE",
        "SELECT vehicle_id, ts, speed_kmh FROM telemetry WHERE speed_kmh > 20",
    ),
    (
        "tumble",
        "vehicle_id STRING, ws TIMESTAMP(3), n BIGINT, top DOUBLE",
        "SELECT vehicle_id, window_start, COUNT(*), MAX(speed_kmh)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY vehicle_id, window_start, window_end",
    ),
    (
        "hop",
        "driver_id STRING, we TIMESTAMP(3), n BIGINT",
        "SELECT driver_id, window_end, COUNT(*)
  FROM TABLE(HOP(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
  GROUP BY driver_id, window_start, window_end",
    ),
    (
        "session",
        "vehicle_id STRING, ws TIMESTAMP(3), we TIMESTAMP(3), n BIGINT",
        "SELECT vehicle_id, window_start, window_end, COUNT(*)
  FROM TABLE(SESSION(TABLE telemetry PARTITION BY vehicle_id, DESCRIPTOR(ts), INTERVAL '20' SECOND))
  GROUP BY vehicle_id, window_start, window_end",
    ),
    (
        "braking",
        "vehicle_id STRING, first_ts TIMESTAMP(3), hard BIGINT",
        "SELECT * FROM telemetry MATCH_RECOGNIZE (
  PARTITION BY vehicle_id ORDER BY ts
  MEASURES FIRST(H.ts) AS first_ts, COUNT(H.ts) AS hard
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (H+ N)
  DEFINE H AS H.accel_ms2 < -1.5, N AS N.accel_ms2 >= -1.5
) AS m",
    ),
    (
        "fastest",
        "ws TIMESTAMP(3), vehicle_id STRING, peak DOUBLE, rn BIGINT",
        "SELECT window_start, vehicle_id, peak, rn FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY peak DESC, vehicle_id) AS rn
  FROM (SELECT vehicle_id, window_start, window_end, MAX(speed_kmh) AS peak
    FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY vehicle_id, window_start, window_end))
WHERE rn <= 3",
    ),
    (
        "fleet_minute",
        "ws TIMESTAMP(3), readings BIGINT, peak DOUBLE",
        "SELECT window_start, COUNT(*), MAX(speed_kmh)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY window_start, window_end",
    ),
    // Not in [`RECOVERY_OUTPUTS`]: the workers' test runs it (three stages there).
    (
        "busiest_drivers",
        "ws TIMESTAMP(3), driver_id STRING, readings BIGINT, rn BIGINT",
        "SELECT window_start, driver_id, readings, rn FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY readings DESC, driver_id) AS rn
  FROM (SELECT driver_id, window_start, window_end, COUNT(*) AS readings
    FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY driver_id, window_start, window_end))
WHERE rn <= 3",
    ),
    // Not in [`RECOVERY_OUTPUTS`]: the workers' test runs it (a join by another key than the
    // topic's: the rows of different vehicles meet through a topic by event type).
    (
        "co_events",
        "event_type STRING, vehicle_id STRING, other_vehicle STRING, ts TIMESTAMP(3), other_ts TIMESTAMP(3)",
        "SELECT a.event_type, a.vehicle_id, b.vehicle_id, a.ts, b.ts
  FROM telemetry a JOIN telemetry b
  ON a.event_type = b.event_type AND a.vehicle_id <> b.vehicle_id
  AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '0.05' SECOND",
    ),
];
