//! The ClickHouse sink against a real ClickHouse (chdb-core 26.9 serving HTTP, started by
//! scripts/test.sh): every dialect type through a created table, type and table mistakes at
//! job start, deduplication of a retried insert, and a server stopped mid-run.

mod common;

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use common::{clickhouse_execute, clickhouse_query, run_script, test_clickhouse};
use sluice::connectors::clickhouse::{ClickHouseConfig, ClickHouseSink};
use sluice::stream::Sink;

/// A database of its own per test, so tests run in parallel.
async fn database(url: &str, name: &str) -> String {
    let db = format!("sluice_test_{name}");
    clickhouse_execute(url, &format!("DROP DATABASE IF EXISTS {db}")).await;
    clickhouse_execute(url, &format!("CREATE DATABASE {db}")).await;
    db
}

#[tokio::test]
async fn every_type_is_written_into_a_created_table() {
    let Some(url) = test_clickhouse() else { return };
    let db = database(&url, "types").await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"id":1,"s":"a\tb","b":true,"ti":-8,"si":300,"i":70000,"bi":9000000000,"f":1.5,"d":2.25,"dec":12.34,"dt":"2024-03-01","ts":"2024-03-01 08:00:01.250","ltz":"2024-03-01 08:00:02.500","arr":[1,2,3],"m":{"x":1},"r":{"a":7,"b":"q"}}"#,
            "\n",
            r#"{"id":2,"s":null,"b":null,"ti":null,"si":null,"i":null,"bi":null,"f":null,"d":null,"dec":null,"dt":null,"ts":null,"ltz":null,"arr":[],"m":{},"r":{"a":null,"b":null}}"#,
            "\n"
        ),
    )
    .unwrap();
    let columns = "id BIGINT, s STRING, b BOOLEAN, ti TINYINT, si SMALLINT, i INT, bi BIGINT, f FLOAT, d DOUBLE,
        dec DECIMAL(10, 2), dt DATE, ts TIMESTAMP(3), ltz TIMESTAMP_LTZ(3), arr ARRAY<INT>, m MAP<STRING, INT>,
        r ROW<a INT, b STRING>";
    let sql = format!(
        "CREATE TABLE t ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE ch ({columns}, PRIMARY KEY (id) NOT ENFORCED) WITH ('connector' = 'clickhouse', 'url' = '{url}',
           'database' = '{db}', 'table' = 'all_types', 'sink.create-table' = 'true');
         INSERT INTO ch SELECT * FROM t;",
        input.display()
    );
    let out = run_script(dir.path(), &sql, 100);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let types = clickhouse_query(
        &url,
        &format!("SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'all_types' FORMAT TabSeparated"),
    )
    .await;
    assert!(types.contains("s\tNullable(String)"), "{types}");
    assert!(types.contains("ts\tNullable(DateTime64(3))"), "{types}");
    assert!(types.contains("dec\tNullable(Decimal(10, 2))"), "{types}");
    assert!(types.contains("arr\tArray(Nullable(Int32))"), "{types}");
    assert!(types.contains("m\tMap(String, Nullable(Int32))"), "{types}");
    let engine = clickhouse_query(
        &url,
        &format!("SELECT engine, sorting_key FROM system.tables WHERE database = '{db}' AND name = 'all_types'"),
    )
    .await;
    assert_eq!(engine, "ReplacingMergeTree\t(id)\n");
    let rows = clickhouse_query(
        &url,
        &format!("SELECT * FROM {db}.all_types ORDER BY id SETTINGS session_timezone = 'UTC'"),
    )
    .await;
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(
        lines,
        vec![
            "1\ta\\tb\ttrue\t-8\t300\t70000\t9000000000\t1.5\t2.25\t12.34\t2024-03-01\t2024-03-01 08:00:01.250\t2024-03-01 08:00:02.500\t[1,2,3]\t{'x':1}\t(7,'q')",
            "2\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t[]\t{}\t(NULL,NULL)",
        ]
    );
}

#[tokio::test]
async fn mistakes_fail_at_job_start_naming_the_column() {
    let Some(url) = test_clickhouse() else { return };
    let db = database(&url, "mistakes").await;
    clickhouse_execute(
        &url,
        &format!("CREATE TABLE {db}.target (id Int64, v String) ENGINE = MergeTree ORDER BY id"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run = |table: &str, cols: &str| {
        let sql = format!(
            "CREATE TABLE src (id BIGINT, v BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
             CREATE TABLE ch ({cols}) WITH ('connector' = 'clickhouse', 'url' = '{url}', 'database' = '{db}', 'table' = '{table}');
             INSERT INTO ch SELECT * FROM src;"
        );
        let out = run_script(dir.path(), &sql, 100);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run("target", "id BIGINT, v BIGINT");
    assert!(
        e.contains("column `v`: a BIGINT cannot be written into ClickHouse String"),
        "{e}"
    );
    let e = run("missing", "id BIGINT, v BIGINT");
    assert!(
        e.contains("does not exist") && e.contains("sink.create-table"),
        "{e}"
    );
    let e = run("target", "id BIGINT, w BIGINT");
    assert!(e.contains("has no column `w`"), "{e}");
    // Nothing was written by the failed jobs.
    let n = clickhouse_query(&url, &format!("SELECT count() FROM {db}.target")).await;
    assert_eq!(n.trim(), "0");
}

fn ids(schema: &Arc<Schema>, from: i64, n: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from_iter_values(from..from + n))],
    )
    .unwrap()
}

#[tokio::test]
async fn a_block_sent_again_with_its_token_is_stored_once() {
    let Some(url) = test_clickhouse() else { return };
    let db = database(&url, "dedup").await;
    // An existing MergeTree table without a deduplication window: the sink sets one.
    clickhouse_execute(
        &url,
        &format!("CREATE TABLE {db}.ids (id Int64) ENGINE = MergeTree ORDER BY id"),
    )
    .await;
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let config = ClickHouseConfig {
        url: url.clone(),
        database: db.clone(),
        table: "ids".into(),
        username: "default".into(),
        password: String::new(),
        batch_size: 1000,
        flush_interval: std::time::Duration::from_secs(1),
        max_retries: 2,
        max_in_flight: 2,
        create_table: false,
        engine: None,
        order_by: None,
        primary_key: Vec::new(),
        exactly_once: true,
    };
    let mut sink = ClickHouseSink::new(config, "ids", &schema);
    sink.open("dedup-test").await.unwrap();
    let settings = clickhouse_query(
        &url,
        &format!(
            "SELECT create_table_query FROM system.tables WHERE database = '{db}' AND name = 'ids'"
        ),
    )
    .await;
    assert!(
        settings.contains("non_replicated_deduplication_window = 1000"),
        "{settings}"
    );
    let block = ids(&schema, 0, 500);
    sink.insert_block(&block, "job/ids/run/1/0").await.unwrap();
    // The same block again, as after a timeout whose insert had in fact succeeded.
    sink.insert_block(&block, "job/ids/run/1/0").await.unwrap();
    let count = |url: String, db: String| async move {
        clickhouse_query(
            &url,
            &format!("SELECT count(), uniqExact(id) FROM {db}.ids"),
        )
        .await
    };
    assert_eq!(count(url.clone(), db.clone()).await, "500\t500\n");
    // A different token is new data.
    sink.insert_block(&ids(&schema, 500, 500), "job/ids/run/1/1")
        .await
        .unwrap();
    assert_eq!(count(url.clone(), db.clone()).await, "1000\t1000\n");
    // The sink's own path: buffered rows go out as one epoch when flushed.
    sink.write(ids(&schema, 1000, 10)).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(count(url, db).await, "1010\t1010\n");
}

/// A ClickHouse server of the test's own, on `port`, keeping its data in `dir`.
fn start_server(dir: &std::path::Path, port: u16) -> std::process::Child {
    let script = std::env::var("SLUICE_TEST_CHDB_SERVER").expect("set by scripts/test.sh");
    let mut child = std::process::Command::new(script)
        .arg(dir)
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..150 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the test's ClickHouse did not start on port {port}");
}

#[tokio::test]
async fn the_job_waits_while_clickhouse_is_down_and_loses_nothing() {
    if test_clickhouse().is_none() {
        return;
    }
    clickhouse_down_for_a_while(18124, "", 30).await;
}

/// With checkpoints, rows are inserted epoch by epoch once each checkpoint completes: the
/// server dies in the middle of writing one, and the epoch is written again, stored once.
#[tokio::test]
async fn with_checkpoints_an_epoch_cut_off_by_clickhouse_stopping_is_stored_once() {
    if test_clickhouse().is_none() {
        return;
    }
    clickhouse_down_for_a_while(
        18125,
        "SET 'execution.checkpointing.interval' = '300 ms';",
        30,
    )
    .await;
}

/// The sink gives up at once, the job fails, and the restart strategy restores the last
/// checkpoint in-process and writes its epochs again until the server is back: still once.
#[tokio::test]
async fn a_job_that_fails_restarts_from_its_checkpoint_and_stores_every_row_once() {
    if test_clickhouse().is_none() {
        return;
    }
    let stderr = clickhouse_down_for_a_while(
        18126,
        "SET 'execution.checkpointing.interval' = '300 ms';
         SET 'restart-strategy.type' = 'fixed-delay';
         SET 'restart-strategy.fixed-delay.attempts' = '20';
         SET 'restart-strategy.fixed-delay.delay' = '500 ms';",
        0,
    )
    .await;
    assert!(
        stderr.contains("restarting from the last checkpoint")
            && stderr.contains("restoring checkpoint"),
        "{stderr}"
    );
}

/// Runs 3000 sequential ids into a ClickHouse of the test's own on `port`, which is stopped
/// while rows flow and started again two seconds later; every id arrives exactly once. Returns
/// the job's stderr.
async fn clickhouse_down_for_a_while(port: u16, settings: &str, max_retries: u32) -> String {
    let url = format!("http://127.0.0.1:{port}");
    let data = tempfile::tempdir().unwrap();
    let mut server = start_server(data.path(), port);
    let dir = tempfile::tempdir().unwrap();
    let rows = 3000;
    let sql = format!(
        "{settings}
         CREATE TABLE src (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '1000',
           'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '{rows}');
         CREATE TABLE ch (id BIGINT) WITH ('connector' = 'clickhouse', 'url' = '{url}',
           'table' = 'ids', 'sink.create-table' = 'true', 'sink.batch-size' = '100',
           'sink.flush-interval' = '100 ms', 'sink.max-retries' = '{max_retries}');
         INSERT INTO ch SELECT * FROM src;"
    );
    let script = dir.path().join("q.sql");
    std::fs::write(&script, sql).unwrap();
    let job = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--quiet", script.to_str().unwrap()])
        .env("XDG_DATA_HOME", dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stop the server while rows flow, keep it down for two seconds, start it again.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let _ = std::process::Command::new("kill")
        .arg(server.id().to_string())
        .status();
    let _ = server.wait();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut server = start_server(data.path(), port);
    let out = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("retry") || stderr.contains("restarting"),
        "the insert should have been retried: {stderr}"
    );
    let counts = clickhouse_query(
        &url,
        "SELECT count(), uniqExact(id), min(id), max(id) FROM default.ids",
    )
    .await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(counts, format!("{rows}\t{rows}\t1\t{rows}\n"), "{stderr}");
    stderr.into_owned()
}

/// An updating result into tables with a PRIMARY KEY: upserts (`_version`, `is_deleted`) into the
/// ReplacingMergeTree `sink.create-table` makes; `FINAL` reads the current result, deleted keys
/// gone.
#[tokio::test]
async fn an_updating_result_is_upserted_by_its_primary_key() {
    let Some(url) = test_clickhouse() else { return };
    let db = database(&url, "upserts").await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let rows = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5)];
    let lines: String = rows
        .iter()
        .map(|(k, v)| format!("{{\"k\":\"{k}\",\"v\":{v}}}\n"))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let ch = |table: &str, columns: &str| {
        format!(
            "CREATE TABLE {table} ({columns}) WITH ('connector' = 'clickhouse', 'url' = '{url}',
               'database' = '{db}', 'table' = '{table}', 'sink.create-table' = 'true');"
        )
    };
    let sql = format!(
        "CREATE TABLE t (k STRING, v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         {}
         {}
         INSERT INTO totals SELECT k, COUNT(*), SUM(v) FROM t GROUP BY k;
         INSERT INTO spread SELECT n, COUNT(*) FROM (SELECT k, COUNT(*) AS n FROM t GROUP BY k) GROUP BY n;",
        input.display(),
        ch("totals", "k STRING, n BIGINT, s BIGINT, PRIMARY KEY (k) NOT ENFORCED"),
        ch("spread", "n BIGINT, keys BIGINT, PRIMARY KEY (n) NOT ENFORCED"),
    );
    // One row per batch: every change is written.
    let out = run_script(dir.path(), &sql, 1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let totals = clickhouse_query(
        &url,
        &format!("SELECT k, n, s FROM {db}.totals FINAL ORDER BY k FORMAT CSV"),
    )
    .await;
    assert_eq!(totals, "\"a\",3,9\n\"b\",1,2\n\"c\",1,4\n");
    // a went from 1 to 2 to 3 rows: n = 2 held a key once, then none (deleted).
    let spread = clickhouse_query(
        &url,
        &format!("SELECT n, keys FROM {db}.spread FINAL ORDER BY n FORMAT CSV"),
    )
    .await;
    assert_eq!(spread, "1,2\n3,1\n");
    let engine = clickhouse_query(
        &url,
        &format!("SELECT engine_full FROM system.tables WHERE database = '{db}' AND name = 'spread' FORMAT TSV"),
    )
    .await;
    assert!(
        engine.starts_with("ReplacingMergeTree(_version, is_deleted)"),
        "{engine}"
    );
    let deleted = clickhouse_query(
        &url,
        &format!("SELECT count() FROM {db}.spread WHERE n = 2 AND is_deleted = 1 FORMAT TSV"),
    )
    .await;
    assert_eq!(deleted.trim(), "1", "the delete of n = 2 is stored");
}
