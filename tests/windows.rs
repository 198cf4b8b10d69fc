//! Window semantics with small hand-checked inputs: CUMULATE, offsets, late rows, cascaded
//! windows, FILTER/HAVING. Runs the real binary over JSON files into CSV sinks.

mod common;

use std::path::Path;

use common::{Pipeline, read_sink_dir};

/// Rows `(key, "HH:MM:SS.mmm" on 2024-01-01, value)` as JSON lines.
fn json_rows(rows: &[(&str, &str, i64)]) -> String {
    rows.iter()
        .map(|(k, t, v)| format!("{{\"k\":\"{k}\",\"ts\":\"2024-01-01 {t}\",\"v\":{v}}}\n"))
        .collect()
}

/// Writes rows as JSON lines into `dir/in.jsonl`; its path.
fn input(dir: &Path, rows: &[(&str, &str, i64)]) -> String {
    let path = dir.join("in.jsonl");
    std::fs::write(&path, json_rows(rows)).unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs `query` (reading table `t(k, ts, v)`, writing table `out`) and returns sorted rows and stderr.
fn run(
    rows: &[(&str, &str, i64)],
    watermark_delay: &str,
    out_cols: &str,
    query: &str,
    batch_size: usize,
) -> (Vec<String>, String) {
    let columns = format!(
        "k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '{watermark_delay}' SECOND"
    );
    let run = Pipeline::new()
        .input("t", &columns, &json_rows(rows))
        .output("out", out_cols)
        .batch_size(batch_size)
        .run(query);
    (run.rows("out"), run.stderr)
}

/// Count and sum per key in 10-second tumbling windows, into `out` (columns [`WINDOW_OUT`]).
const TUMBLE_10S: &str = "INSERT INTO out SELECT k, window_start, window_end, COUNT(*), SUM(v)
     FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
     GROUP BY k, window_start, window_end;";

const WINDOW_OUT: &str =
    "k STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), c BIGINT, s BIGINT";

#[test]
fn cumulate_windows_grow_by_step_within_each_period() {
    let rows = [
        ("a", "00:00:00.500", 1),
        ("a", "00:00:01.500", 2),
        ("a", "00:00:02.500", 3),
        ("a", "00:00:04.500", 4),
        ("a", "00:00:06.500", 5),
    ];
    let (got, _) = run(
        &rows,
        "0",
        WINDOW_OUT,
        "INSERT INTO out SELECT k, window_start, window_end, COUNT(*), SUM(v)
         FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '6' SECOND))
         GROUP BY k, window_start, window_end;",
        1000,
    );
    let d = "2024-01-01 00:00:0";
    let want = [
        format!("a,{d}0.000,{d}2.000,2,3"),
        format!("a,{d}0.000,{d}4.000,3,6"),
        format!("a,{d}0.000,{d}6.000,4,10"),
        format!("a,{d}6.000,{d}8.000,1,5"),
    ];
    let mut want: Vec<String> = want.to_vec();
    // [6, 10) and [6, 12) hold the same single row.
    want.push(format!("a,{d}6.000,2024-01-01 00:00:10.000,1,5"));
    want.push(format!("a,{d}6.000,2024-01-01 00:00:12.000,1,5"));
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn tumble_and_hop_with_offset_shift_window_boundaries() {
    let rows = [
        ("a", "00:00:02.000", 1),
        ("a", "00:00:04.000", 1),
        ("a", "00:00:12.000", 1),
        ("a", "00:00:14.000", 1),
    ];
    let (got, _) = run(
        &rows,
        "0",
        WINDOW_OUT,
        "INSERT INTO out SELECT k, window_start, window_end, COUNT(*), SUM(v)
         FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '3' SECOND))
         GROUP BY k, window_start, window_end;",
        1000,
    );
    assert_eq!(
        got,
        [
            "a,2023-12-31 23:59:53.000,2024-01-01 00:00:03.000,1,1",
            "a,2024-01-01 00:00:03.000,2024-01-01 00:00:13.000,2,2",
            "a,2024-01-01 00:00:13.000,2024-01-01 00:00:23.000,1,1",
        ]
    );
}

#[test]
fn late_rows_are_dropped_and_counted() {
    // One row per batch so each row's watermark is in force before the next arrives. The row
    // at 2 s arrives after the watermark reached 11 s: its window [0, 10) has fired.
    let rows = [
        ("a", "00:00:01.000", 1),
        ("a", "00:00:05.000", 1),
        ("a", "00:00:11.000", 1),
        ("a", "00:00:02.000", 100),
    ];
    let (got, stderr) = run(&rows, "0", WINDOW_OUT, TUMBLE_10S, 1);
    assert_eq!(
        got,
        [
            "a,2024-01-01 00:00:00.000,2024-01-01 00:00:10.000,2,2",
            "a,2024-01-01 00:00:10.000,2024-01-01 00:00:20.000,1,1"
        ]
    );
    assert!(
        stderr.contains("1 late rows"),
        "counted in the job summary: {stderr}"
    );
}

#[test]
fn cascaded_windows_aggregate_minutes_into_five_minutes() {
    let rows = [
        ("a", "00:00:10.000", 1),
        ("a", "00:01:10.000", 2),
        ("b", "00:01:20.000", 4),
        ("a", "00:04:59.999", 8),
        ("a", "00:05:00.000", 16),
    ];
    let (got, _) = run(
        &rows,
        "1",
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), minutes BIGINT, total BIGINT",
        "CREATE VIEW per_minute AS
           SELECT k, window_time AS minute_time, SUM(v) AS s
           FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
           GROUP BY k, window_start, window_end, window_time;
         INSERT INTO out SELECT window_start, window_end, COUNT(*), SUM(s)
         FROM TABLE(TUMBLE(TABLE per_minute, DESCRIPTOR(minute_time), INTERVAL '5' MINUTE))
         GROUP BY window_start, window_end;",
        1000,
    );
    assert_eq!(
        got,
        [
            "2024-01-01 00:00:00.000,2024-01-01 00:05:00.000,4,15",
            "2024-01-01 00:05:00.000,2024-01-01 00:10:00.000,1,16"
        ]
    );
}

#[test]
fn filter_clause_having_and_expressions_over_aggregates() {
    let rows = [
        ("a", "00:00:01.000", 1),
        ("a", "00:00:02.000", 5),
        ("a", "00:00:03.000", 7),
        ("b", "00:00:04.000", 9),
    ];
    let (got, _) = run(
        &rows,
        "0",
        "k STRING, big BIGINT, doubled BIGINT, spread BIGINT",
        "INSERT INTO out SELECT k, COUNT(*) FILTER (WHERE v > 2), SUM(v) * 2, MAX(v) - MIN(v)
         FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY k, window_start, window_end
         HAVING COUNT(*) > 1;",
        1000,
    );
    assert_eq!(got, ["a,2,26,6"]);
}

#[test]
fn window_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = input(dir.path(), &[("a", "00:00:01.000", 1)]);
    let cases = [
        (
            "SELECT k, COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY k;",
            "must GROUP BY window_start, window_end",
        ),
        (
            "SELECT k, window_start FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE));",
            "a window TVF must be aggregated",
        ),
        (
            "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(k), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;",
            "must be TIMESTAMP(3)",
        ),
        (
            "SELECT COUNT(*) FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '2' MINUTE, INTERVAL '5' MINUTE)) GROUP BY window_start, window_end;",
            "HOP with a slide that does not divide the size is not supported",
        ),
    ];
    for (query, expected) in cases {
        let sql = dir.path().join("bad.sql");
        std::fs::write(
            &sql,
            format!("CREATE TABLE t (k STRING, ts TIMESTAMP(3), v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');\n{query}"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["validate", sql.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{query}\n→ {stderr}"
        );
        assert!(stderr.contains("bad.sql:2:"), "positioned: {stderr}");
    }
}

#[test]
fn current_watermark_lets_a_query_drop_or_tag_late_rows() {
    let rows = [
        ("a", "00:00:01.000", 1),
        ("a", "00:00:05.000", 2),
        ("a", "00:00:11.000", 3),
        ("a", "00:00:02.000", 4),
    ];
    let (got, _) = run(
        &rows,
        "0",
        "v BIGINT, wm TIMESTAMP(3)",
        "INSERT INTO out SELECT v, CURRENT_WATERMARK(ts) FROM t
         WHERE CURRENT_WATERMARK(ts) IS NULL OR ts > CURRENT_WATERMARK(ts);",
        1,
    );
    // One row per batch: each row sees the watermark of the rows before it.
    assert_eq!(
        got,
        [
            "1,",
            "2,2024-01-01 00:00:01.000",
            "3,2024-01-01 00:00:05.000"
        ]
    );
}

#[test]
fn late_rows_can_go_to_a_side_output_table() {
    let dir = tempfile::tempdir().unwrap();
    let late_dir = dir.path().join("late");
    let rows = [
        ("a", "00:00:01.000", 1),
        ("a", "00:00:11.000", 2),
        ("b", "00:00:03.000", 30),
        ("a", "00:00:12.000", 4),
    ];
    let (got, stderr) = run(
        &rows,
        "0",
        WINDOW_OUT,
        &format!(
            "SET 'table.exec.late-rows' = 'side-output:late';
             CREATE TABLE late (k STRING, ts TIMESTAMP(3), v BIGINT)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             {TUMBLE_10S}",
            late_dir.display()
        ),
        1,
    );
    assert_eq!(
        got,
        [
            "a,2024-01-01 00:00:00.000,2024-01-01 00:00:10.000,1,1",
            "a,2024-01-01 00:00:10.000,2024-01-01 00:00:20.000,2,6"
        ]
    );
    assert_eq!(
        read_sink_dir(&late_dir),
        ["b,2024-01-01 00:00:03.000,30"],
        "the late row, whole"
    );
    assert!(stderr.contains("1 late rows"), "{stderr}");
}

#[test]
fn allowed_lateness_re_emits_updated_windows_until_it_expires() {
    let rows = [
        ("a", "00:00:01.000", 1),
        ("a", "00:00:11.000", 2),  // watermark 11 s: [0, 10) is emitted
        ("a", "00:00:02.000", 4),  // late, within 30 s: [0, 10) is emitted again, updated
        ("a", "00:00:45.000", 8),  // watermark 45 s: [10, 20) emitted; [0, 10) can no longer change
        ("a", "00:00:03.000", 16), // too late: dropped and counted
    ];
    let (got, stderr) = run(
        &rows,
        "0",
        WINDOW_OUT,
        &format!("SET 'table.exec.window.allowed-lateness' = '30 s'; {TUMBLE_10S}"),
        1,
    );
    assert_eq!(
        got,
        [
            "a,2024-01-01 00:00:00.000,2024-01-01 00:00:10.000,1,1",
            "a,2024-01-01 00:00:00.000,2024-01-01 00:00:10.000,2,5",
            "a,2024-01-01 00:00:10.000,2024-01-01 00:00:20.000,1,2",
            "a,2024-01-01 00:00:40.000,2024-01-01 00:00:50.000,1,8",
        ]
    );
    assert!(stderr.contains("1 late rows"), "{stderr}");
}

#[test]
fn legacy_group_tumble_and_hop_with_start_end_rowtime() {
    let rows = [
        ("a", "00:00:01.000", 1),
        ("a", "00:00:09.000", 2),
        ("b", "00:00:12.000", 4),
    ];
    let (got, _) = run(
        &rows,
        "0",
        "k STRING, ws TIMESTAMP(3), we TIMESTAMP(3), wt TIMESTAMP(3), s BIGINT",
        "INSERT INTO out
         SELECT k, TUMBLE_START(ts, INTERVAL '10' SECOND), TUMBLE_END(ts, INTERVAL '10' SECOND),
                TUMBLE_ROWTIME(ts, INTERVAL '10' SECOND), SUM(v)
         FROM t GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), k;",
        1000,
    );
    assert_eq!(
        got,
        [
            "a,2024-01-01 00:00:00.000,2024-01-01 00:00:10.000,2024-01-01 00:00:09.999,3",
            "b,2024-01-01 00:00:10.000,2024-01-01 00:00:20.000,2024-01-01 00:00:19.999,4",
        ]
    );
    let (got, _) = run(
        &rows,
        "0",
        "ws TIMESTAMP(3), c BIGINT",
        "INSERT INTO out SELECT HOP_START(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND), COUNT(*)
         FROM t GROUP BY HOP(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND);",
        1000,
    );
    assert_eq!(
        got,
        [
            "2023-12-31 23:59:55.000,1",
            "2024-01-01 00:00:00.000,2",
            "2024-01-01 00:00:05.000,2",
            "2024-01-01 00:00:10.000,1",
        ]
    );
}

#[test]
fn a_row_without_its_event_time_is_a_bad_record() {
    // Three records, the middle one without `ts` (and, for a computed event time, with a `t`
    // that is not a timestamp): skipped and counted when parse errors are ignored, else the job
    // fails naming the record and the column. Once an internal error about `window_start`.
    let tumble = "INSERT INTO out SELECT window_start, COUNT(*)
                  FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
                  GROUP BY window_start, window_end;";
    let physical = (
        "k STRING, ts TIMESTAMP(3)",
        "{\"k\":\"a\",\"ts\":\"2024-01-01 00:00:01\"}\n{\"k\":\"b\"}\n{\"k\":\"c\",\"ts\":\"2024-01-01 00:02:01\"}\n",
        "in.jsonl:2",
        "{\"k\":\"b\"}",
    );
    let computed = (
        "k STRING, t STRING, ts AS TRY_CAST(t AS TIMESTAMP(3))",
        "{\"k\":\"a\",\"t\":\"2024-01-01 00:00:01\"}\n{\"k\":\"b\",\"t\":\"soon\"}\n{\"k\":\"c\",\"t\":\"2024-01-01 00:02:01\"}\n",
        "table `t`",
        "soon",
    );
    for (columns, rows, location, record) in [physical, computed] {
        for ignore in [true, false] {
            let pipeline = Pipeline::new();
            let path = pipeline.dir().join("in.jsonl");
            std::fs::write(&path, rows).unwrap();
            let run = pipeline
                .table(&format!(
                    "CREATE TABLE t ({columns}, WATERMARK FOR ts AS ts) WITH ('connector' = 'filesystem',
                       'path' = '{}', 'format' = 'json', 'json.ignore-parse-errors' = '{ignore}');",
                    path.display()
                ))
                .output("out", "ws TIMESTAMP(3), n BIGINT")
                .batch_size(1)
                .run(tumble);
            if ignore {
                assert_eq!(
                    run.rows("out"),
                    ["2024-01-01 00:00:00.000,1", "2024-01-01 00:02:00.000,1"]
                );
                assert!(
                    run.stderr.contains("1 bad records skipped"),
                    "{}",
                    run.stderr
                );
            } else {
                let err = run.error();
                assert!(
                    err.contains(location) && err.contains("`ts`") && err.contains(record),
                    "{err}"
                );
                assert!(err.contains("json.ignore-parse-errors"), "{err}");
                assert!(!err.contains("internal error"), "{err}");
            }
        }
    }
}

#[test]
fn a_generator_row_without_event_time_is_skipped_and_counted() {
    // A generator has no format, hence no option to fail on bad rows: rows whose event time is
    // NULL are skipped and counted, and every other row is in the one window.
    let run = Pipeline::new()
        .table(
            "CREATE TABLE g (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
             WITH ('connector' = 'datagen', 'number-of-rows' = '200', 'fields.ts.null-rate' = '0.5');",
        )
        .run(
            "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE g, DESCRIPTOR(ts), INTERVAL '100' DAY))
             GROUP BY window_start, window_end;",
        );
    assert!(run.ok, "{}", run.stderr);
    let counted: u64 = run
        .stdout
        .lines()
        .map(|l| {
            l.trim_start_matches("+I[")
                .trim_end_matches(']')
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    let skipped: u64 = run
        .stderr
        .lines()
        .find_map(|l| {
            l.split(", ")
                .find_map(|p| p.strip_suffix(" bad records skipped"))
        })
        .unwrap_or_else(|| panic!("no bad records counted: {}", run.stderr))
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(skipped > 0 && counted > 0, "{}", run.stderr);
    assert_eq!(counted + skipped, 200);
}
