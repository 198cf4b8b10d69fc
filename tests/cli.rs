//! The command line as a user meets it: Ctrl-C, bare SELECT printing, generator output.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{read_sink_dir, sluice};

#[test]
fn ctrl_c_stops_cleanly_and_commits_what_was_written() {
    stops_cleanly_on("-INT");
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    // What `docker stop` and Kubernetes send before they kill.
    stops_cleanly_on("-TERM");
}

fn stops_cleanly_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = dir.path().join("endless.sql");
    std::fs::write(
        &sql,
        format!(
            "CREATE TABLE t (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE)
               WITH ('connector' = 'fleet-sim', 'vehicles' = '10', 'rows-per-second' = '2000');
             CREATE TABLE o (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO o SELECT * FROM t;",
            out.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", sql.to_str().unwrap()])
        .env("XDG_DATA_HOME", dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("stopped: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let rows_out: u64 = summary
        .split(" rows in, ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    let written = read_sink_dir(&out);
    assert!(rows_out > 0);
    assert_eq!(
        written.len() as u64,
        rows_out,
        "every row counted out is in a committed part file"
    );
    assert!(
        std::fs::read_dir(&out).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".inprogress")),
        "no in-progress file is left behind"
    );
}

#[test]
fn bare_select_prints_rows_like_flink() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("q.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE t (id BIGINT) WITH ('connector' = 'datagen', 'fields.id.kind' = 'sequence',
           'fields.id.start' = '1', 'fields.id.end' = '3');
         SELECT id, id * 2 AS twice FROM t;",
    )
    .unwrap();
    let out = sluice(&["run", "--quiet", sql.to_str().unwrap()], &[]);
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(lines, ["+I[1, 2]", "+I[2, 4]", "+I[3, 6]"]);
}

#[test]
fn generator_writes_the_fleet_schema_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl.gz");
    let args = [
        "--events",
        "500",
        "--seed",
        "3",
        "--start",
        "2024-03-01 08:00:00",
        "--rate",
        "0",
    ];
    let mut run_a = vec!["gen", "fleet", "--output", a.to_str().unwrap()];
    run_a.extend(args);
    sluice(&run_a, &[]);
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text.lines().count(), 500);
    let first = text.lines().next().unwrap();
    for field in [
        "vehicle_id",
        "driver_id",
        "ts",
        "lat",
        "lon",
        "speed_kmh",
        "accel_ms2",
        "engine_temp_c",
        "fuel_pct",
        "event_type",
    ] {
        assert!(first.contains(&format!("\"{field}\":")), "{first}");
    }
    assert!(
        first.contains("\"ts\":\"2024-03-01 08:00:00."),
        "SQL timestamp text: {first}"
    );

    let mut run_b = vec!["gen", "fleet", "--output", b.to_str().unwrap()];
    run_b.extend(args);
    sluice(&run_b, &[]);
    let mut unzipped = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&b).unwrap()),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, text, "same seed and start, same events");
}

/// Several INSERTs of a statement set into one filesystem table: each pipeline writes part files
/// of its own (they once shared names, and one pipeline's commit failed on the other's rename).
#[test]
fn a_statement_set_writes_one_file_table_from_several_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"n\": 1}\n{\"n\": 2}\n{\"n\": 3}\n").unwrap();
    let out = dir.path().join("out");
    let sql = format!(
        "CREATE TABLE src (n INT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE dst (n INT, kind STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
         EXECUTE STATEMENT SET BEGIN
           INSERT INTO dst SELECT n, 'odd' FROM src WHERE n % 2 = 1;
           INSERT INTO dst SELECT n, 'even' FROM src WHERE n % 2 = 0;
           INSERT INTO dst SELECT n * 10, 'all' FROM src;
         END;",
        input.display(),
        out.display()
    );
    let run = common::run_script(dir.path(), &sql, 2);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut rows = common::read_sink_dir(&out);
    rows.sort();
    assert_eq!(
        rows,
        ["1,odd", "10,all", "2,even", "20,all", "3,odd", "30,all"]
    );
}

/// A query written to two tables runs once and both get every row.
#[test]
fn one_query_into_two_tables_writes_both() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"n\": 1}\n{\"n\": 2}\n{\"n\": 3}\n").unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let sql = format!(
        "CREATE TABLE src (n INT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE a (n INT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
         CREATE TABLE b (n INT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
         EXECUTE STATEMENT SET BEGIN
           INSERT INTO a SELECT n * 2 FROM src WHERE n > 1;
           INSERT INTO b SELECT n * 2 FROM src WHERE n > 1;
         END;",
        input.display(),
        a.display(),
        b.display()
    );
    let run = common::run_script(dir.path(), &sql, 2);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    // Rows out counts each table's rows.
    assert!(stderr.contains("3 rows in, 4 rows out"), "{stderr}");
    for out in [a, b] {
        let mut rows = common::read_sink_dir(&out);
        rows.sort();
        assert_eq!(rows, ["4", "6"]);
    }
}

#[test]
fn show_describe_and_explain_in_a_file_print_their_results_before_the_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("look.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE g (id BIGINT, twice AS id * 2)
           WITH ('connector' = 'datagen', 'number-of-rows' = '2',
                 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '2');
         SHOW TABLES;
         DESCRIBE g;
         EXPLAIN SELECT twice FROM g;
         SELECT twice FROM g;",
    )
    .unwrap();
    let out = sluice(&["run", "--quiet", sql.to_str().unwrap()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "g", "SHOW TABLES first:\n{stdout}");
    assert_eq!(lines[1], "id BIGINT", "then DESCRIBE:\n{stdout}");
    assert_eq!(lines[2], "twice BIGINT  AS id * 2", "{stdout}");
    let explain = lines
        .iter()
        .position(|l| l.starts_with("Job `"))
        .expect("EXPLAIN's plan");
    let first_row = lines
        .iter()
        .position(|l| l.starts_with("+I["))
        .expect("the query's rows");
    assert!(
        explain < first_row,
        "results of statements come before rows:\n{stdout}"
    );
    let mut rows: Vec<&str> = lines[first_row..].to_vec();
    rows.sort();
    assert_eq!(rows, ["+I[2]", "+I[4]"]);
}
