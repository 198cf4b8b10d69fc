//! The rest of Flink's streaming SQL over small hand-checked inputs, for what the golden queries
//! do not cover: keep-first deduplication, RANGE OVER frames, UNION ALL of aggregations, and the
//! forms not supported yet named as such. Runs the real binary over JSON files into CSV sinks.

mod common;

use common::Pipeline;

/// Rows `(key, "HH:MM:SS" on 2024-01-01, value)` as JSON lines.
fn json_rows(rows: &[(&str, &str, i64)]) -> String {
    rows.iter()
        .map(|(k, t, v)| format!("{{\"k\":\"{k}\",\"ts\":\"2024-01-01 {t}\",\"v\":{v}}}\n"))
        .collect()
}

/// Table `t(k, ts, v)` with a 5 s watermark delay, one row per batch (so watermarks come
/// between rows), and `out(out_cols)`.
fn pipeline(rows: &[(&str, &str, i64)], out_cols: &str) -> Pipeline {
    Pipeline::new()
        .input(
            "t",
            "k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND",
            &json_rows(rows),
        )
        .output("out", out_cols)
        .batch_size(1)
}

const ROWS: &[(&str, &str, i64)] = &[
    ("a", "00:00:05", 50),
    ("a", "00:00:03", 30),
    ("b", "00:00:04", 40),
    ("a", "00:00:02", 20),
    ("b", "00:00:10", 99),
    ("c", "00:00:30", 7),
    ("a", "00:00:31", 1),
];

#[test]
fn keep_first_deduplication_emits_each_keys_earliest_row_once() {
    let run = pipeline(ROWS, "k STRING, ts TIMESTAMP(3), v BIGINT").run(
        "INSERT INTO out SELECT k, ts, v FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts ASC) AS rn FROM t
         ) WHERE rn = 1;",
    );
    // a's earliest is 00:00:02 although it came fourth (still on time: the watermark was 0 s).
    assert_eq!(
        run.rows("out"),
        [
            "a,2024-01-01 00:00:02.000,20",
            "b,2024-01-01 00:00:04.000,40",
            "c,2024-01-01 00:00:30.000,7",
        ]
    );
    // Selecting fewer columns puts a projection between the filter and the ROW_NUMBER.
    let narrow = pipeline(ROWS, "k STRING, v BIGINT").run(
        "INSERT INTO out SELECT k, v FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn FROM t
         ) WHERE rn = 1;",
    );
    assert_eq!(narrow.rows("out"), ["a,20", "b,40", "c,7"]);
}

#[test]
fn range_over_frames_sum_the_interval_before_each_row() {
    let run = pipeline(ROWS, "k STRING, ts TIMESTAMP(3), v BIGINT, s BIGINT, n BIGINT").run(
        "INSERT INTO out SELECT k, ts, v,
           SUM(v) OVER w, COUNT(*) OVER w
         FROM t
         WINDOW w AS (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW);",
    );
    // Per key in time order, each row with the rows of the 2 s before it.
    assert_eq!(
        run.rows("out"),
        [
            "a,2024-01-01 00:00:02.000,20,20,1",
            "a,2024-01-01 00:00:03.000,30,50,2",
            "a,2024-01-01 00:00:05.000,50,80,2",
            "a,2024-01-01 00:00:31.000,1,1,1",
            "b,2024-01-01 00:00:04.000,40,40,1",
            "b,2024-01-01 00:00:10.000,99,99,1",
            "c,2024-01-01 00:00:30.000,7,7,1",
        ]
    );
}

#[test]
fn union_all_of_window_aggregations_keeps_each_branchs_state() {
    let run = pipeline(ROWS, "kind STRING, k STRING, window_start TIMESTAMP(3), x BIGINT").run(
        "INSERT INTO out
         SELECT 'count', k, window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
           GROUP BY k, window_start, window_end
         UNION ALL
         SELECT 'max', k, window_start, MAX(v) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
           WHERE v > 10 GROUP BY k, window_start, window_end;",
    );
    assert_eq!(
        run.rows("out"),
        [
            "count,a,2024-01-01 00:00:00.000,3",
            "count,a,2024-01-01 00:00:30.000,1",
            "count,b,2024-01-01 00:00:00.000,1",
            "count,b,2024-01-01 00:00:10.000,1",
            "count,c,2024-01-01 00:00:30.000,1",
            "max,a,2024-01-01 00:00:00.000,50",
            "max,b,2024-01-01 00:00:00.000,40",
            "max,b,2024-01-01 00:00:10.000,99",
        ]
    );
}

#[test]
fn an_updating_aggregate_prints_its_changelog_and_files_refuse_it() {
    let run = pipeline(ROWS, "k STRING, n BIGINT").run(
        // One task: the exact order of changes across keys.
        "SET 'parallelism.default' = '1';
         CREATE TABLE shown (k STRING, n BIGINT, s BIGINT) WITH ('connector' = 'print');
         INSERT INTO shown SELECT k, COUNT(*), SUM(v) FROM t WHERE v > 10 GROUP BY k;",
    );
    assert!(run.ok, "{}", run.stderr);
    // One row per batch: each change as it happens, as Flink prints it.
    let changes: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        changes,
        [
            "+I[a, 1, 50]",
            "-U[a, 1, 50]",
            "+U[a, 2, 80]",
            "+I[b, 1, 40]",
            "-U[a, 2, 80]",
            "+U[a, 3, 100]",
            "-U[b, 1, 40]",
            "+U[b, 2, 139]",
        ]
    );
    let refused = pipeline(ROWS, "k STRING, n BIGINT")
        .run("INSERT INTO out SELECT k, COUNT(*) FROM t GROUP BY k;");
    assert!(
        refused.error().contains(
            "table sink `out` (connector 'filesystem') doesn't support consuming update and delete changes, which are produced by GROUP BY t.k without a window (an updating aggregate)"
        ),
        "{}",
        refused.error()
    );
    let over_changes = pipeline(ROWS, "k STRING, n BIGINT").run(
        "CREATE VIEW totals AS SELECT k, COUNT(*) AS n, MAX(ts) AS ts FROM t GROUP BY k;
         INSERT INTO out SELECT k, SUM(n) OVER (PARTITION BY k ORDER BY ts) FROM totals;",
    );
    assert!(
        over_changes
            .error()
            .contains("an OVER aggregation doesn't support consuming update and delete changes"),
        "{}",
        over_changes.error()
    );
}

#[test]
fn a_mini_batch_changes_a_busy_key_once_per_batch() {
    let settings = |size: &str| {
        format!(
            "SET 'parallelism.default' = '1';
             SET 'table.exec.mini-batch.enabled' = 'true';
             SET 'table.exec.mini-batch.allow-latency' = '1 min';
             SET 'table.exec.mini-batch.size' = '{size}';
             CREATE TABLE shown (k STRING, n BIGINT, s BIGINT) WITH ('connector' = 'print');
             INSERT INTO shown SELECT k, COUNT(*), SUM(v) FROM t WHERE v > 10 GROUP BY k;"
        )
    };
    // Two rows per mini-batch: (a 50, a 30) (b 40, a 20) (b 99, c 7) (a 1); the rows one at a
    // time gave 8 changes (see above), these give 6 with the same end state.
    let pairs = pipeline(ROWS, "k STRING").run(&settings("2"));
    assert!(pairs.ok, "{}", pairs.stderr);
    let changes: Vec<&str> = pairs.stdout.lines().collect();
    assert_eq!(
        changes,
        [
            "+I[a, 2, 80]",
            "+I[b, 1, 40]",
            "-U[a, 2, 80]",
            "+U[a, 3, 100]",
            "-U[b, 1, 40]",
            "+U[b, 2, 139]",
        ]
    );
    // Everything in one mini-batch (the input ends before it is full or due): final rows only.
    let whole = pipeline(ROWS, "k STRING").run(&settings("1000"));
    let changes: Vec<&str> = whole.stdout.lines().collect();
    assert_eq!(changes, ["+I[a, 3, 100]", "+I[b, 2, 139]"]);
    // Windows behind held rows still get every row on time: the watermarks wait with them.
    let windows = pipeline(ROWS, "k STRING, n BIGINT").run(
        "SET 'table.exec.mini-batch.enabled' = 'true';
         SET 'table.exec.mini-batch.allow-latency' = '1 min';
         SET 'table.exec.mini-batch.size' = '3';
         INSERT INTO out SELECT k, COUNT(*) FROM TABLE(
           TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY k, window_start, window_end;",
    );
    assert!(windows.ok, "{}", windows.stderr);
    let mut counts = windows.rows("out");
    counts.sort();
    assert_eq!(counts, ["a,1", "a,3", "b,1", "b,1", "c,1"]);
    // Enabled without a size: Flink refuses, so do we, at the statement that runs.
    let unsized_ = pipeline(ROWS, "k STRING").run(
        "SET 'table.exec.mini-batch.enabled' = 'true';
         SET 'table.exec.mini-batch.allow-latency' = '1 s';
         INSERT INTO out SELECT k FROM t;",
    );
    assert!(
        unsized_.error().contains(":5:10: 'table.exec.mini-batch.enabled' is 'true' but 'table.exec.mini-batch.size' is not set"),
        "{}",
        unsized_.error()
    );
}

/// The rows a printed changelog leaves, sorted: `+I`/`+U` add a row, `-U`/`-D` take back one
/// shown before (a retraction of a row never shown fails the test).
fn final_state(printed: &str) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for line in printed.lines() {
        common::apply_change(&mut rows, line);
    }
    rows.sort();
    rows
}

#[test]
fn top_n_of_an_updating_aggregate_and_a_global_aggregate() {
    // The two keys with most rows so far: ranks change as counts grow.
    let run = pipeline(ROWS, "k STRING").run(
        "CREATE VIEW counts AS SELECT k, COUNT(*) AS n FROM t GROUP BY k;
         CREATE TABLE shown (k STRING, n BIGINT, rn BIGINT) WITH ('connector' = 'print');
         INSERT INTO shown SELECT k, n, rn FROM (
           SELECT *, ROW_NUMBER() OVER (ORDER BY n DESC) AS rn FROM counts
         ) WHERE rn <= 2;",
    );
    assert!(run.ok, "{}", run.stderr);
    // Each count of a ranked key taken back (`-U`, from the aggregate) and added again moves
    // its rank's row; c (1) never passes b, which had 1 first.
    let changes: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        changes,
        [
            "+I[a, 1, 1]",
            "-U[a, 1, 1]",
            "+U[a, 2, 1]",
            "+I[b, 1, 2]",
            "-U[a, 2, 1]",
            "+U[a, 3, 1]",
            "-U[b, 1, 2]",
            "+U[b, 2, 2]",
            "-U[a, 3, 1]",
            "+U[a, 4, 1]",
        ]
    );
    assert_eq!(final_state(&run.stdout), ["[a, 4, 1]", "[b, 2, 2]"]);
    // No GROUP BY: one group of every row.
    let total = pipeline(ROWS, "k STRING").run(
        "CREATE TABLE shown (n BIGINT, s BIGINT) WITH ('connector' = 'print');
         INSERT INTO shown SELECT COUNT(*), SUM(v) FROM t;",
    );
    assert!(total.ok, "{}", total.stderr);
    assert_eq!(final_state(&total.stdout), ["[7, 247]"]);
    assert_eq!(total.stdout.lines().next(), Some("+I[1, 50]"));
}

#[test]
fn min_and_max_over_a_changelog_take_back_any_row() {
    let rows = [
        ("a", "00:00:01", 5),
        ("b", "00:00:02", 1),
        ("b", "00:00:03", 1),
        ("c", "00:00:04", 9),
    ];
    let run = pipeline(&rows, "k STRING").run(
        "CREATE VIEW sums AS SELECT k, SUM(v) AS s FROM t GROUP BY k;
         CREATE TABLE shown (most BIGINT, least BIGINT, keys BIGINT) WITH ('connector' = 'print');
         INSERT INTO shown SELECT MAX(s), MIN(s), COUNT(*) FROM sums;",
    );
    assert!(run.ok, "{}", run.stderr);
    // Sums a 5, b 1, b 2, c 9: b's second row takes back its 1, not the oldest value (a's 5).
    let states: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("+I") || l.starts_with("+U"))
        .collect();
    assert_eq!(
        states,
        ["+I[5, 5, 1]", "+U[5, 1, 2]", "+U[5, 2, 2]", "+U[9, 2, 3]"]
    );
    assert_eq!(final_state(&run.stdout), ["[9, 2, 3]"]);
}

#[test]
fn a_regular_join_takes_an_updating_aggregates_changes() {
    // Each row with its key's count so far: as counts change, the pairs made with the old count
    // are taken back.
    let run = pipeline(ROWS, "k STRING").run(
        "CREATE VIEW counts AS SELECT k, COUNT(*) AS n FROM t GROUP BY k;
         CREATE TABLE shown (k STRING, v BIGINT, n BIGINT) WITH ('connector' = 'print');
         INSERT INTO shown SELECT t.k, t.v, c.n FROM t LEFT JOIN counts AS c ON t.k = c.k;",
    );
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        final_state(&run.stdout),
        [
            "[a, 1, 4]",
            "[a, 20, 4]",
            "[a, 30, 4]",
            "[a, 50, 4]",
            "[b, 40, 2]",
            "[b, 99, 2]",
            "[c, 7, 1]",
        ]
    );
}

#[test]
fn keep_last_deduplication_and_top_n_outside_windows_are_changelogs() {
    let keep_last = pipeline(ROWS, "k STRING, ts TIMESTAMP(3), v BIGINT").run(
        "INSERT INTO out SELECT k, ts, v FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC) AS rn FROM t
         ) WHERE rn = 1;",
    );
    assert!(
        keep_last.error().contains(
            "table sink `out` (connector 'filesystem') doesn't support consuming update and delete changes, which are produced by ROW_NUMBER() OVER (… ORDER BY ts DESC) = 1"
        ),
        "{}",
        keep_last.error()
    );
    // Top-N outside a window: a changelog of rank changes, refused by a file…
    let top_n = |sink: &str| {
        format!(
            "INSERT INTO {sink} SELECT k, v, rn FROM (
               SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t
             ) WHERE rn <= 2;"
        )
    };
    let refused = pipeline(ROWS, "k STRING, v BIGINT, rn BIGINT").run(&top_n("out"));
    assert!(
        refused
            .error()
            .contains("which are produced by ROW_NUMBER() OVER (…) <= 2 (Top-N outside a window)"),
        "{}",
        refused.error()
    );
    // … and printed: applied in order, the changes leave each key's two largest values.
    let shown = pipeline(ROWS, "k STRING").run(&format!(
        "CREATE TABLE shown (k STRING, v BIGINT, rn BIGINT) WITH ('connector' = 'print');\n{}",
        top_n("shown")
    ));
    assert!(shown.ok, "{}", shown.stderr);
    assert_eq!(
        final_state(&shown.stdout),
        [
            "[a, 30, 2]",
            "[a, 50, 1]",
            "[b, 40, 2]",
            "[b, 99, 1]",
            "[c, 7, 1]"
        ]
    );
}

#[test]
fn a_left_interval_join_pads_rows_whose_interval_passed_without_a_partner() {
    let run = pipeline(ROWS, "k STRING, l_ts TIMESTAMP(3), r_ts TIMESTAMP(3)").run(
        "INSERT INTO out SELECT l.k, l.ts, r.ts FROM t l LEFT JOIN t r
           ON l.k = r.k AND r.ts > l.ts AND r.ts <= l.ts + INTERVAL '3' SECOND;",
    );
    // a at 2 s came after a at 3 s and 5 s, still on time: it finds both.
    assert_eq!(
        run.rows("out"),
        [
            "a,2024-01-01 00:00:02.000,2024-01-01 00:00:03.000",
            "a,2024-01-01 00:00:02.000,2024-01-01 00:00:05.000",
            "a,2024-01-01 00:00:03.000,2024-01-01 00:00:05.000",
            "a,2024-01-01 00:00:05.000,",
            "a,2024-01-01 00:00:31.000,",
            "b,2024-01-01 00:00:04.000,",
            "b,2024-01-01 00:00:10.000,",
            "c,2024-01-01 00:00:30.000,",
        ]
    );
}

/// Windows per key with their row count, and the same windows of rows with v > 30.
const COUNTS: &str = "(SELECT k, window_start, window_end, COUNT(*) AS c
   FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY k, window_start, window_end)";
const FAST: &str = "(SELECT k, window_start, window_end, COUNT(*) AS n
   FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) WHERE v > 30
   GROUP BY k, window_start, window_end)";

#[test]
fn window_semi_and_anti_joins_keep_the_windows_with_or_without_a_partner() {
    let query = |negated: &str| {
        format!(
            "INSERT INTO out SELECT a.k, a.window_start, a.c FROM {COUNTS} a
             WHERE {negated} EXISTS (SELECT * FROM {FAST} b
               WHERE a.k = b.k AND a.window_start = b.window_start AND a.window_end = b.window_end);"
        )
    };
    let out = "k STRING, window_start TIMESTAMP(3), c BIGINT";
    let semi = pipeline(ROWS, out).run(&query(""));
    assert_eq!(
        semi.rows("out"),
        [
            "a,2024-01-01 00:00:00.000,3",
            "b,2024-01-01 00:00:00.000,1",
            "b,2024-01-01 00:00:10.000,1",
        ]
    );
    let anti = pipeline(ROWS, out).run(&query("NOT"));
    assert_eq!(
        anti.rows("out"),
        ["a,2024-01-01 00:00:30.000,1", "c,2024-01-01 00:00:30.000,1"]
    );
    let inner = pipeline(
        ROWS,
        "k STRING, window_start TIMESTAMP(3), c BIGINT, n BIGINT",
    )
    .run(&format!(
        "INSERT INTO out SELECT a.k, a.window_start, a.c, b.n FROM {COUNTS} a JOIN {FAST} b
           ON a.k = b.k AND a.window_start = b.window_start AND a.window_end = b.window_end;"
    ));
    assert_eq!(
        inner.rows("out"),
        [
            "a,2024-01-01 00:00:00.000,3,1",
            "b,2024-01-01 00:00:00.000,1,1",
            "b,2024-01-01 00:00:10.000,1,1",
        ]
    );
}

/// Two tables: brakes and speeds, each with its own watermark.
fn two_tables(out_cols: &str) -> Pipeline {
    let columns =
        "k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND";
    Pipeline::new()
        .input(
            "brakes",
            columns,
            &json_rows(&[
                ("a", "00:00:10", 1),
                ("b", "00:00:20", 2),
                ("a", "00:00:40", 3),
            ]),
        )
        .input(
            "speeds",
            columns,
            &json_rows(&[
                ("a", "00:00:11", 90),
                ("a", "00:00:15", 95),
                ("b", "00:00:30", 99),
                ("a", "00:00:41", 80),
            ]),
        )
        .output("out", out_cols)
        .batch_size(1)
}

#[test]
fn streams_of_two_tables_join_and_union_in_one_pipeline() {
    let joined = two_tables("k STRING, brake_ts TIMESTAMP(3), speed BIGINT").run(
        "INSERT INTO out SELECT b.k, b.ts, s.v FROM brakes b LEFT JOIN speeds s
           ON b.k = s.k AND s.ts BETWEEN b.ts AND b.ts + INTERVAL '5' SECOND;",
    );
    assert_eq!(
        joined.rows("out"),
        [
            "a,2024-01-01 00:00:10.000,90",
            "a,2024-01-01 00:00:10.000,95",
            "a,2024-01-01 00:00:40.000,80",
            "b,2024-01-01 00:00:20.000,",
        ]
    );
    let union = two_tables("kind STRING, k STRING, v BIGINT").run(
        "INSERT INTO out SELECT 'brake', k, v FROM brakes UNION ALL SELECT 'speed', k, v FROM speeds;",
    );
    assert_eq!(union.rows("out").len(), 7);
    // Windows of both tables joined when both have passed them.
    let windows = two_tables("k STRING, window_start TIMESTAMP(3), brakes BIGINT, top BIGINT").run(
        "INSERT INTO out SELECT b.k, b.window_start, b.n, s.top FROM
           (SELECT k, window_start, window_end, COUNT(*) AS n
              FROM TABLE(TUMBLE(TABLE brakes, DESCRIPTOR(ts), INTERVAL '30' SECOND)) GROUP BY k, window_start, window_end) b
         JOIN
           (SELECT k, window_start, window_end, MAX(v) AS top
              FROM TABLE(TUMBLE(TABLE speeds, DESCRIPTOR(ts), INTERVAL '30' SECOND)) GROUP BY k, window_start, window_end) s
         ON b.k = s.k AND b.window_start = s.window_start AND b.window_end = s.window_end;",
    );
    assert_eq!(
        windows.rows("out"),
        [
            "a,2024-01-01 00:00:00.000,1,95",
            "a,2024-01-01 00:00:30.000,1,80",
        ]
    );
    let plan = two_tables("k STRING")
        .run("EXPLAIN INSERT INTO out SELECT k FROM brakes UNION ALL SELECT k FROM speeds;");
    assert!(
        plan.stdout
            .contains("← source #0 `brakes`\n  ← source #1 `speeds`"),
        "{}",
        plan.stdout
    );
}

/// Checkpoint barriers of two sources are aligned in the pipeline that reads both: a job taking
/// checkpoints every 20 ms while it unions two tables ends, every row written once.
#[test]
fn barriers_of_two_sources_align_in_the_pipeline_reading_both() {
    let rows = |prefix: &str, n: usize| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "{{\"k\":\"{prefix}{}\",\"ts\":\"2024-01-01 00:{:02}:{:02}\",\"v\":{i}}}\n",
                    i % 7,
                    i / 60 % 60,
                    i % 60
                )
            })
            .collect()
    };
    let columns =
        "k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND";
    let run = Pipeline::new()
        .input("a", columns, &rows("a", 3000))
        .input("b", columns, &rows("b", 2000))
        .output("out", "k STRING, v BIGINT")
        .batch_size(50)
        .run(
            "SET 'execution.checkpointing.interval' = '20 ms';
             INSERT INTO out SELECT k, v FROM a UNION ALL SELECT k, v FROM b;",
        );
    let out = run.rows("out");
    assert_eq!(out.len(), 5000, "{}", run.stderr);
    // The final checkpoint completed: both sources' last barriers met in the pipeline.
    assert!(run.stderr.contains("last final"), "{}", run.stderr);
    let distinct: std::collections::HashSet<&String> = out.iter().collect();
    assert_eq!(distinct.len(), 5000);
}

/// A versioned table (PRIMARY KEY and WATERMARK): each brake joins the speed limit in force at
/// its time.
#[test]
fn a_temporal_join_takes_the_version_valid_at_each_rows_time() {
    let expected = [
        "a,2024-01-01 00:00:10.000,50",
        "a,2024-01-01 00:00:40.000,30",
        "b,2024-01-01 00:00:20.000,",
    ];
    // b at 20 s comes before b's first limit (25 s): padded.
    let versioned_table = limits_and_brakes(", PRIMARY KEY (k) NOT ENFORCED").run(
        "INSERT INTO out SELECT b.k, b.ts, l.v FROM brakes AS b
           LEFT JOIN limits FOR SYSTEM_TIME AS OF b.ts AS l ON b.k = l.k;",
    );
    assert_eq!(versioned_table.rows("out"), expected);
    // Flink's versioned view: the limits deduplicated to each key's latest.
    let versioned_view = limits_and_brakes("").run(
        "CREATE VIEW latest AS SELECT k, ts, v FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC) AS rn FROM limits
         ) WHERE rn = 1;
         INSERT INTO out SELECT b.k, b.ts, l.v FROM brakes AS b
           LEFT JOIN latest FOR SYSTEM_TIME AS OF b.ts AS l ON b.k = l.k;",
    );
    assert_eq!(versioned_view.rows("out"), expected);
    // Any other view is not versioned.
    let not_versioned = limits_and_brakes("").run(
        "CREATE VIEW firsts AS SELECT k, ts, v FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC) AS rn FROM limits
         ) WHERE rn <= 2;
         INSERT INTO out SELECT b.k, b.ts, l.v FROM brakes AS b
           JOIN firsts FOR SYSTEM_TIME AS OF b.ts AS l ON b.k = l.k;",
    );
    assert!(
        not_versioned
            .error()
            .contains("`firsts` is not a versioned table"),
        "{}",
        not_versioned.error()
    );
}

/// `brakes` and `limits` (k, ts, v), `limits` with `limits_extra` in its columns, into
/// `out(k, ts, lim)`.
/// The probe side's time need not be selected: the join reads it for itself (the optimizer
/// had dropped it, and the join failed to plan).
#[test]
fn a_temporal_join_needs_no_selected_probe_time() {
    let run = limits_and_brakes(", PRIMARY KEY (k) NOT ENFORCED")
        .output("picked", "k STRING, lim BIGINT")
        .run(
            "INSERT INTO picked SELECT b.k, l.v FROM brakes AS b
               LEFT JOIN limits FOR SYSTEM_TIME AS OF b.ts AS l ON b.k = l.k;",
        );
    let mut rows = run.rows("picked");
    rows.sort();
    assert_eq!(rows, ["a,30", "a,50", "b,"], "{}", run.stderr);
}

fn limits_and_brakes(limits_extra: &str) -> Pipeline {
    let columns =
        "k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND";
    Pipeline::new()
        .input(
            "brakes",
            columns,
            &json_rows(&[
                ("a", "00:00:10", 1),
                ("b", "00:00:20", 2),
                ("a", "00:00:40", 3),
            ]),
        )
        .input(
            "limits",
            &format!("{columns}{limits_extra}"),
            &json_rows(&[
                ("a", "00:00:05", 50),
                ("a", "00:00:30", 30),
                ("b", "00:00:25", 80),
            ]),
        )
        .output("out", "k STRING, ts TIMESTAMP(3), lim BIGINT")
        .batch_size(1)
}

/// Without time bounds, a join of two streams keeps every row: INNER is append-only, LEFT a
/// changelog whose padded rows are taken back when a partner comes.
#[test]
fn regular_joins_of_two_tables_keep_every_row() {
    let inner = two_tables("k STRING, brake BIGINT, speed BIGINT")
        .run("INSERT INTO out SELECT b.k, b.v, s.v FROM brakes b JOIN speeds s ON b.k = s.k;");
    // a has 2 brakes × 3 speeds, b 1 × 1.
    assert_eq!(inner.rows("out").len(), 7);
    // One table joined with itself, one row per batch: the order of arrival is fixed, so b's
    // 40 is shown padded until its 99 comes, then taken back.
    let left = pipeline(ROWS, "k STRING").run(
        "CREATE TABLE shown (k STRING, v BIGINT, bigger BIGINT) WITH ('connector' = 'print');
         INSERT INTO shown SELECT l.k, l.v, r.v FROM t l LEFT JOIN t r ON l.k = r.k AND r.v > l.v;",
    );
    assert!(left.ok, "{}", left.stderr);
    let mut rows: Vec<String> = Vec::new();
    let mut retracted = 0;
    for line in left.stdout.lines() {
        let (kind, row) = line.split_at(2);
        match kind {
            "+I" => rows.push(row.to_string()),
            "-D" => {
                retracted += 1;
                let at = rows.iter().position(|r| r == row).expect("a shown row");
                rows.remove(at);
            }
            other => panic!("{other} in {line}"),
        }
    }
    rows.sort();
    assert_eq!(
        rows,
        [
            "[a, 1, 20]",
            "[a, 1, 30]",
            "[a, 1, 50]",
            "[a, 20, 30]",
            "[a, 20, 50]",
            "[a, 30, 50]",
            "[a, 50, null]",
            "[b, 40, 99]",
            "[b, 99, null]",
            "[c, 7, null]",
        ]
    );
    assert_eq!(retracted, 1, "{}", left.stdout);
}

#[test]
fn a_mini_batch_not_full_goes_when_its_latency_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("q.sql");
    // An endless source, far too slow to fill the mini-batch: only its latency lets rows out.
    std::fs::write(
        &sql,
        "SET 'table.exec.mini-batch.enabled' = 'true';
         SET 'table.exec.mini-batch.allow-latency' = '200 ms';
         SET 'table.exec.mini-batch.size' = '1000000';
         CREATE TABLE t (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '20',
           'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '1000000');
         SELECT id % 2 AS odd, COUNT(*) AS n FROM t GROUP BY id % 2;",
    )
    .unwrap();
    let (mut child, rx) = common::spawn_run_printing(&sql, dir.path());
    let first = rx.recv_timeout(std::time::Duration::from_secs(20));
    child.kill().unwrap();
    child.wait().unwrap();
    let first = first.expect("a change printed while the source runs");
    assert!(first.starts_with("+I["), "{first}");
}
