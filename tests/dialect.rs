//! The Flink dialect: what parses, what is planned, and where errors point.

use std::process::Command;

use sluice::sql::ast::{ColumnKind, Statement};
use sluice::sql::{Planner, parse_script_with};

const TELEMETRY: &str = "
CREATE TEMPORARY TABLE IF NOT EXISTS telemetry (
  vehicle_id  STRING NOT NULL COMMENT 'the vehicle',
  ts          TIMESTAMP(3),
  speed_kmh   DOUBLE,
  tags        ARRAY<STRING>,
  attrs       MAP<STRING, DOUBLE>,
  pos         ROW<lat DOUBLE, lon DOUBLE>,
  price       DECIMAL(10, 2),
  speed_ms    AS speed_kmh / 3.6,
  kafka_ts    TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  `offset`    BIGINT METADATA VIRTUAL,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND,
  PRIMARY KEY (vehicle_id) NOT ENFORCED
) COMMENT 'raw telemetry' WITH (
  'connector' = 'kafka',
  'topic' = 'fleet.telemetry.raw',
  'properties.bootstrap.servers' = '${BROKERS:-localhost:9092}',
  'properties.group.id' = 'g',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json',
  'json.ignore-parse-errors' = 'true'
);
";

fn lookup(_: &str) -> Option<String> {
    None
}

#[test]
fn parses_every_statement_kind() {
    let text = format!(
        "SET 'pipeline.name' = 'fleet'; -- a comment\nRESET 'x'; RESET;\n{TELEMETRY}
         CREATE VIEW fast AS SELECT * FROM telemetry WHERE speed_kmh > 100;
         /* block comment; with a semicolon */
         CREATE TABLE out (v STRING) WITH ('connector' = 'print');
         INSERT INTO out SELECT vehicle_id FROM fast;
         EXECUTE STATEMENT SET BEGIN
           INSERT INTO out SELECT vehicle_id FROM telemetry;
           INSERT INTO out SELECT 'x' FROM telemetry;
         END;
         SELECT vehicle_id FROM telemetry;
         SHOW TABLES; DESCRIBE telemetry; EXPLAIN SELECT 1 FROM telemetry;
         STOP JOB 'abc' WITH SAVEPOINT;
         DROP VIEW IF EXISTS fast; DROP TABLE out;"
    );
    let script = parse_script_with("all.sql", &text, lookup).unwrap();
    let kinds: Vec<&str> = script
        .statements
        .iter()
        .map(|s| match &s.node {
            Statement::Set { .. } => "set",
            Statement::Reset { .. } => "reset",
            Statement::CreateTable(_) => "table",
            Statement::CreateView { .. } => "view",
            Statement::Insert(_) => "insert",
            Statement::StatementSet(v) if v.len() == 2 => "set2",
            Statement::Query(_) => "query",
            Statement::Show(_) => "show",
            Statement::Describe(_) => "describe",
            Statement::Explain(_) => "explain",
            Statement::StopJob {
                with_savepoint: true,
                ..
            } => "stop",
            Statement::Drop { .. } => "drop",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "set", "reset", "reset", "table", "view", "table", "insert", "set2", "query", "show",
            "describe", "explain", "stop", "drop", "drop"
        ]
    );
    let Statement::CreateTable(t) = &script.statements[3].node else {
        panic!()
    };
    assert_eq!(t.columns.len(), 10);
    assert!(matches!(t.columns[7].kind, ColumnKind::Computed(_)));
    assert!(
        matches!(&t.columns[8].kind, ColumnKind::Metadata { key: Some(k), is_virtual: true, .. } if k == "timestamp")
    );
    assert_eq!(t.primary_key, vec!["vehicle_id"]);
    assert_eq!(t.watermark.as_ref().unwrap().column, "ts");
    assert!(
        t.options.iter().any(|o| o.value == "localhost:9092"),
        "default of ${{BROKERS:-...}} applied"
    );
}

async fn plan_error(text: &str) -> String {
    let script = match parse_script_with("bad.sql", text, lookup) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    match Planner::new().plan_script(&script).await {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn syntax_error_names_file_line_and_column() {
    let err = plan_error(
        "CREATE TABLE t (\n  a INT,\n  b STRING\n  c INT\n) WITH ('connector' = 'print');",
    )
    .await;
    assert!(
        err.starts_with("bad.sql:4:3: expected `,` or `)` after a column definition, found: c"),
        "{err}"
    );
    assert!(err.contains("4 |   c INT\n  |   ^"), "{err}");
}

#[tokio::test]
async fn unknown_option_lists_the_valid_ones() {
    let err = plan_error("CREATE TABLE t (a INT) WITH (\n 'connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'json',\n 'json.ignore-parse-error' = 'true');").await;
    assert!(
        err.starts_with("bad.sql:3:2: unknown option 'json.ignore-parse-error' for connector 'filesystem' (did you mean 'json.ignore-parse-errors'?)"),
        "{err}"
    );
    assert!(err.contains("valid options: connector,"), "{err}");
    let err = plan_error("CREATE TABLE t (a INT) WITH ('connector' = 'filesystem', 'path' = '/x', 'fromat' = 'json');").await;
    assert!(
        err.contains("requires option 'format' ('fromat' is given: a typo?)"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_column_and_connector_and_variable_are_positioned() {
    let text = format!(
        "{TELEMETRY}\nCREATE TABLE o (v STRING) WITH ('connector' = 'print');\nINSERT INTO o\nSELECT speeed FROM telemetry;"
    );
    let err = plan_error(&text).await;
    let line = text.lines().count();
    assert!(
        err.starts_with(&format!("bad.sql:{line}:8: ")) && err.contains("speeed"),
        "{err}"
    );

    let err = plan_error("CREATE TABLE t (a INT) WITH ('connector' = 'kafak');").await;
    assert!(
        err.contains("1:30: unknown connector 'kafak'; available: kafka"),
        "{err}"
    );

    let err = plan_error("CREATE TABLE t (a INT) WITH ('connector' = '${NOPE}');").await;
    assert!(err.contains("1:45: variable `NOPE` is not set"), "{err}");
}

#[tokio::test]
async fn unsupported_constructs_say_so_by_name() {
    let text = format!(
        "{TELEMETRY}\nCREATE TABLE o (v STRING) WITH ('connector' = 'print');\nINSERT INTO o SELECT vehicle_id FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY vehicle_id ORDER BY speed_kmh DESC) AS rn FROM telemetry) WHERE rn > 3;"
    );
    let err = plan_error(&text).await;
    assert!(
        err.contains("a ROW_NUMBER() must be filtered to its first rows"),
        "{err}"
    );
}

#[tokio::test]
async fn views_and_shared_scans_form_one_job() {
    let text = format!(
        "{TELEMETRY}
         CREATE VIEW fast AS SELECT vehicle_id, speed_ms FROM telemetry WHERE speed_kmh > 100;
         CREATE TABLE a (v STRING, s DOUBLE) WITH ('connector' = 'blackhole');
         CREATE TABLE b (v STRING) WITH ('connector' = 'blackhole');
         INSERT INTO a SELECT * FROM fast;
         INSERT INTO b SELECT UPPER(vehicle_id) FROM telemetry WHERE FLOOR(ts TO MINUTE) > ts;"
    );
    let script = parse_script_with("ok.sql", &text, lookup).unwrap();
    let job = Planner::new()
        .plan_script(&script)
        .await
        .unwrap()
        .job
        .unwrap();
    assert_eq!(job.sources.len(), 1, "both INSERTs read one shared scan");
    assert_eq!(job.pipelines.len(), 2);
    let explain = job.explain();
    assert!(
        explain.contains("watermark: FOR ts AS ts - INTERVAL '5' SECOND"),
        "{explain}"
    );
    assert!(
        explain.contains("→ sink `a`") && explain.contains("→ sink `b`"),
        "{explain}"
    );
    assert!(
        explain.contains("date_trunc"),
        "FLOOR(ts TO MINUTE) is planned: {explain}"
    );
}

#[tokio::test]
async fn the_same_query_into_two_tables_is_computed_once() {
    let text = |reuse: &str| {
        format!(
            "{TELEMETRY}
             {reuse}
             CREATE VIEW fast AS SELECT vehicle_id, speed_kmh FROM telemetry WHERE speed_kmh > 100;
             CREATE TABLE a (v STRING, s DOUBLE) WITH ('connector' = 'blackhole');
             CREATE TABLE b (v STRING, s DOUBLE) WITH ('connector' = 'blackhole');
             CREATE TABLE c (v STRING) WITH ('connector' = 'blackhole');
             EXECUTE STATEMENT SET BEGIN
               INSERT INTO a SELECT * FROM fast;
               INSERT INTO b SELECT * FROM fast;
               INSERT INTO c SELECT vehicle_id FROM fast;
             END;"
        )
    };
    let plan = |text: String| async move {
        let script = parse_script_with("ok.sql", &text, lookup).unwrap();
        let mut planner = Planner::new();
        planner.plan_script(&script).await.unwrap().job.unwrap()
    };
    // a and b get the same query: one pipeline writing both; c's query differs.
    let job = plan(text("")).await;
    assert_eq!(job.pipelines.len(), 2);
    let sinks: Vec<Vec<&str>> = job
        .pipelines
        .iter()
        .map(|p| p.sinks.iter().map(|s| s.table.as_str()).collect())
        .collect();
    assert_eq!(sinks, [vec!["a", "b"], vec!["c"]]);
    let explain = job.explain();
    assert!(explain.contains("Pipeline `INSERT INTO a, b`"), "{explain}");
    // Flink's switch turns it off.
    let job = plan(text(
        "SET 'table.optimizer.reuse-sub-plan-enabled' = 'false';",
    ))
    .await;
    assert_eq!(job.pipelines.len(), 3);
}

#[test]
fn validate_exits_1_with_position_and_0_when_fine() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.sql");
    std::fs::write(
        &bad,
        "CREATE TABLE t (a INT) WITH ('connector' = 'blackhole');\nINSERT INTO t SELEC 1;",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["validate", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.sql:2:"), "{stderr}");

    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.sql");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["validate", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_shipped_pipeline_and_example_validates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["pipelines", "examples"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sql") {
                files.push(path.to_str().unwrap().to_string());
            }
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    let mut args = vec!["validate".to_string()];
    args.extend(files);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
