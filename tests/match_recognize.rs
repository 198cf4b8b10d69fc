//! MATCH_RECOGNIZE semantics on small inputs whose expected matches are worked out by hand (in
//! the comments): quantifiers, greedy and reluctant, AFTER MATCH SKIP, WITHIN, PREV, FIRST/LAST,
//! aggregates, ALL ROWS PER MATCH, alternation and groups. Runs the real binary over JSON files
//! into CSV sinks.

mod common;

use common::{Pipeline, read_sink_dir};

/// Rows `(key, second, value)`: event time 2024-01-01 00:00:<second>.
type Row = (&'static str, u32, i64);

/// Runs `query` over table `t(k STRING, ts TIMESTAMP(3), v BIGINT)` (watermark = ts, rows read
/// in batches of `batch_size`) into table `out(<out_cols>)`; returns the sorted CSV rows and
/// stderr.
fn run_with(rows: &[Row], out_cols: &str, query: &str, batch_size: usize) -> (Vec<String>, String) {
    let text: String = rows
        .iter()
        .map(|(k, s, v)| {
            format!(
                "{{\"k\":\"{k}\",\"ts\":\"2024-01-01 00:{:02}:{:02}\",\"v\":{v}}}\n",
                s / 60,
                s % 60
            )
        })
        .collect();
    let run = Pipeline::new()
        .input(
            "t",
            "k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts",
            &text,
        )
        .output("out", out_cols)
        .batch_size(batch_size)
        .run(query);
    let lines = if run.ok { run.rows("out") } else { Vec::new() };
    (lines, run.stderr)
}

fn run(rows: &[Row], out_cols: &str, query: &str) -> Vec<String> {
    // Batches of 3 rows: watermarks advance mid-stream, so matching is incremental.
    let (lines, stderr) = run_with(rows, out_cols, query, 3);
    assert!(stderr.contains("rows out"), "{stderr}");
    lines
}

/// One key, values at seconds 0, 1, 2, ...
fn series(values: &[i64]) -> Vec<Row> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| ("a", i as u32, v))
        .collect()
}

/// A query over `t` selecting `measures` for `pattern` / `define`, with `extra` clauses
/// (ROWS PER MATCH, AFTER MATCH SKIP, WITHIN) in their places.
fn query(measures: &str, rows_per_match: &str, skip: &str, pattern: &str, define: &str) -> String {
    format!(
        "INSERT INTO out SELECT * FROM t MATCH_RECOGNIZE (
           PARTITION BY k ORDER BY ts
           MEASURES {measures}
           {rows_per_match}
           {skip}
           PATTERN {pattern}
           DEFINE {define}
         ) AS m;"
    )
}

#[test]
fn v_shape_with_history_dependent_conditions() {
    // Flink's documentation example: a price falls for one or more rows, then rises above the
    // second-to-last low. Prices at seconds 0..10; the only match starts at 4 (25), falls to 7
    // (14) and rises at 8 (24 > 15). Skipping to the last PRICE_UP (8), nothing else matches.
    let rows = series(&[12, 17, 19, 21, 25, 18, 15, 14, 24, 25, 19]);
    let q = query(
        "START_ROW.v AS start_v, LAST(PRICE_DOWN.v) AS bottom_v, LAST(PRICE_UP.v) AS end_v,
         EXTRACT(SECOND FROM LAST(PRICE_UP.ts)) AS end_s",
        "ONE ROW PER MATCH",
        "AFTER MATCH SKIP TO LAST PRICE_UP",
        "(START_ROW PRICE_DOWN+ PRICE_UP)",
        "PRICE_DOWN AS (LAST(PRICE_DOWN.v, 1) IS NULL AND PRICE_DOWN.v < START_ROW.v)
                        OR PRICE_DOWN.v < LAST(PRICE_DOWN.v, 1),
         PRICE_UP AS PRICE_UP.v > LAST(PRICE_DOWN.v, 1)",
    );
    let got = run(
        &rows,
        "k STRING, start_v BIGINT, bottom_v BIGINT, end_v BIGINT, end_s BIGINT",
        &q,
    );
    assert_eq!(got, vec!["a,25,14,24,8"]);
}

#[test]
fn running_aggregates_in_define_and_final_ones_in_measures() {
    // A+ B with A while the running average of A stays below 15 (B matches anything):
    // rows 0-3 (12 17 13 16, avg 14.5) then 25 breaks it and is B; from 5: 2 4 10 15 25 25
    // (avg 13.5), then 30 would make it 15.86 and is B.
    let rows = series(&[12, 17, 13, 16, 25, 2, 4, 10, 15, 25, 25, 30]);
    let q = query(
        "EXTRACT(SECOND FROM FIRST(A.ts)) AS first_s, EXTRACT(SECOND FROM LAST(A.ts)) AS last_s,
         AVG(CAST(A.v AS DOUBLE)) AS avg_a, COUNT(A.v) AS n_a, SUM(v) AS total, MAX(B.v) AS b,
         MATCH_NUMBER() AS n",
        "ONE ROW PER MATCH",
        "AFTER MATCH SKIP PAST LAST ROW",
        "(A+ B)",
        "A AS AVG(CAST(A.v AS DOUBLE)) < 15",
    );
    let got = run(
        &rows,
        "k STRING, first_s BIGINT, last_s BIGINT, avg_a DOUBLE, n_a BIGINT, total BIGINT, b BIGINT, n BIGINT",
        &q,
    );
    assert_eq!(got, vec!["a,0,3,14.5,4,83,25,1", "a,5,10,13.5,6,111,30,2"]);
}

#[test]
fn greedy_takes_the_most_rows_and_reluctant_the_fewest() {
    // B and C both accept rows >= 10: a greedy B+ keeps taking them and leaves the last for C;
    // a reluctant B+? hands the second row to C.
    let rows = series(&[1, 10, 11, 12, 0]);
    let cols = "k STRING, b_rows BIGINT, c_v BIGINT";
    let measures = "COUNT(B.v) AS b_rows, LAST(C.v) AS c_v";
    let define = "A AS A.v < 10, B AS B.v >= 10, C AS C.v >= 10";
    let skip = "AFTER MATCH SKIP PAST LAST ROW";
    let greedy = run(&rows, cols, &query(measures, "", skip, "(A B+ C)", define));
    assert_eq!(greedy, vec!["a,2,12"]);
    let reluctant = run(&rows, cols, &query(measures, "", skip, "(A B+? C)", define));
    assert_eq!(reluctant, vec!["a,1,11"]);
    // {n,m} and {n,m}? the same way: B{1,3} greedy takes 10 11, C gets 12; reluctant B 10, C 11.
    let greedy = run(
        &rows,
        cols,
        &query(measures, "", skip, "(A B{1,3} C)", define),
    );
    assert_eq!(greedy, vec!["a,2,12"]);
    let reluctant = run(
        &rows,
        cols,
        &query(measures, "", skip, "(A B{1,3}? C)", define),
    );
    assert_eq!(reluctant, vec!["a,1,11"]);
    // B* / B*? and B? / B??: zero Bs for the reluctant ones.
    let star = run(&rows, cols, &query(measures, "", skip, "(A B*? C)", define));
    assert_eq!(star, vec!["a,0,10"]);
    let opt = run(&rows, cols, &query(measures, "", skip, "(A B? C)", define));
    assert_eq!(opt, vec!["a,1,11"]);
    let opt_reluctant = run(&rows, cols, &query(measures, "", skip, "(A B?? C)", define));
    assert_eq!(opt_reluctant, vec!["a,0,10"]);
}

#[test]
fn exact_and_bounded_repetitions() {
    // Runs of "up" rows (v > previous row): 1 2 3 4 | 0 5 6 | 0 7.
    let rows = series(&[1, 2, 3, 4, 0, 5, 6, 0, 7]);
    let cols = "k STRING, first_v BIGINT, rows_n BIGINT";
    let measures = "FIRST(U.v) AS first_v, COUNT(*) AS rows_n";
    let define = "U AS U.v > PREV(U.v)";
    let skip = "AFTER MATCH SKIP PAST LAST ROW";
    // U{2}: 2 3 | 5 6 (4 alone is left over after 2 3; 7 alone too).
    assert_eq!(
        run(&rows, cols, &query(measures, "", skip, "(U{2})", define)),
        vec!["a,2,2", "a,5,2"]
    );
    // U{3,}: only 2 3 4.
    assert_eq!(
        run(&rows, cols, &query(measures, "", skip, "(U{3,})", define)),
        vec!["a,2,3"]
    );
    // U{1,2}: 2 3 | 4 | 5 6 | 7 (the last one at the end of the input).
    assert_eq!(
        run(&rows, cols, &query(measures, "", skip, "(U{1,2})", define)),
        vec!["a,2,2", "a,4,1", "a,5,2", "a,7,1"]
    );
}

#[test]
fn after_match_skip_modes() {
    // A B+ C: A is 1, B is 2 or 1 (so a B row can also be an A), C is 3.
    // Rows: 1 1 2 3 — matches from 0 (A B B C) and from 1 (A B C).
    let rows = series(&[1, 1, 2, 3]);
    let cols = "k STRING, a_s BIGINT, rows_n BIGINT, n BIGINT";
    let measures = "EXTRACT(SECOND FROM A.ts) AS a_s, COUNT(*) AS rows_n, MATCH_NUMBER() AS n";
    let define = "A AS A.v = 1, B AS B.v IN (1, 2), C AS C.v = 3";
    let q = |skip: &str| query(measures, "", skip, "(A B+ C)", define);
    assert_eq!(
        run(&rows, cols, &q("AFTER MATCH SKIP PAST LAST ROW")),
        vec!["a,0,4,1"]
    );
    assert_eq!(
        run(&rows, cols, &q("AFTER MATCH SKIP TO NEXT ROW")),
        vec!["a,0,4,1", "a,1,3,2"]
    );
    // TO FIRST B: the first B of the first match is row 1, where the second match starts.
    assert_eq!(
        run(&rows, cols, &q("AFTER MATCH SKIP TO FIRST B")),
        vec!["a,0,4,1", "a,1,3,2"]
    );
    // TO LAST B: row 2 (v = 2) cannot be an A.
    assert_eq!(
        run(&rows, cols, &q("AFTER MATCH SKIP TO LAST B")),
        vec!["a,0,4,1"]
    );
}

#[test]
fn within_bounds_the_duration_of_a_match() {
    // A (v = 1) then C (v = 3) with anything between; WITHIN 3 seconds. From 0 the C at 4 is
    // too late (4 - 0 >= 3); the A at 5 reaches the C at 7 in time.
    let rows = series(&[1, 0, 0, 0, 3, 1, 0, 3]);
    let q = "INSERT INTO out SELECT * FROM t MATCH_RECOGNIZE (
           PARTITION BY k ORDER BY ts
           MEASURES EXTRACT(SECOND FROM A.ts) AS a_s, EXTRACT(SECOND FROM C.ts) AS c_s
           PATTERN (A X*? C) WITHIN INTERVAL '3' SECOND
           DEFINE A AS A.v = 1, C AS C.v = 3
         );";
    assert_eq!(
        run(&rows, "k STRING, a_s BIGINT, c_s BIGINT", q),
        vec!["a,5,7"]
    );
}

#[test]
fn prev_with_offsets_and_physical_rows() {
    // D: a value below the one two rows back. PREV reads the partition's rows, also before the
    // match: at second 2 (v 5) two rows back is 9.
    let rows = series(&[9, 7, 5, 8, 9, 1]);
    let cols = "k STRING, s BIGINT, v BIGINT, back2 BIGINT";
    let q = query(
        "EXTRACT(SECOND FROM D.ts) AS s, D.v AS v, PREV(D.v, 2) AS back2",
        "ONE ROW PER MATCH",
        "AFTER MATCH SKIP PAST LAST ROW",
        "(D)",
        "D AS D.v < PREV(D.v, 2)",
    );
    // 5 < 9 (s2), 8 < 7? no, 9 < 5? no, 1 < 8 (s5).
    assert_eq!(run(&rows, cols, &q), vec!["a,2,5,9", "a,5,1,8"]);
}

#[test]
fn all_rows_per_match_with_classifier_and_running_measures() {
    // A B+ C over 1 2 2 3: every matched row is output with its variable, the running count
    // of B rows and the match number. The row at 4 (v 9) is not part of any match.
    let rows = series(&[1, 2, 2, 3, 9]);
    let q = query(
        "CLASSIFIER() AS var, COUNT(B.v) AS bs, MATCH_NUMBER() AS n",
        "ALL ROWS PER MATCH",
        "AFTER MATCH SKIP PAST LAST ROW",
        "(A B+ C)",
        "A AS A.v = 1, B AS B.v = 2, C AS C.v = 3",
    );
    let got = run(
        &rows,
        "k STRING, ts TIMESTAMP(3), v BIGINT, var STRING, bs BIGINT, n BIGINT",
        &q,
    );
    assert_eq!(
        got,
        vec![
            "a,2024-01-01 00:00:00.000,1,A,0,1",
            "a,2024-01-01 00:00:01.000,2,B,1,1",
            "a,2024-01-01 00:00:02.000,2,B,2,1",
            "a,2024-01-01 00:00:03.000,3,C,2,1",
        ]
    );
}

#[test]
fn alternation_and_grouped_repetition() {
    // (U D)+ E: alternating up/down pairs then an end marker; (A | B) prefers A.
    let rows = series(&[1, 2, 1, 2, 9, 1, 2, 9]);
    let cols = "k STRING, first_s BIGINT, pairs BIGINT";
    let q = query(
        "EXTRACT(SECOND FROM FIRST(U.ts)) AS first_s, COUNT(U.v) AS pairs",
        "",
        "AFTER MATCH SKIP PAST LAST ROW",
        "((U D)+ E)",
        "U AS U.v = 1, D AS D.v = 2, E AS E.v = 9",
    );
    assert_eq!(run(&rows, cols, &q), vec!["a,0,2", "a,5,1"]);
    // (A | B) X: a row fitting both A and B is an A (the left alternative is preferred).
    let q = query(
        "COUNT(A.v) AS a_rows, COUNT(B.v) AS b_rows",
        "",
        "AFTER MATCH SKIP PAST LAST ROW",
        "((A | B) X)",
        "A AS A.v = 1, B AS B.v <= 2, X AS X.v = 9",
    );
    let rows = series(&[2, 9, 1, 9, 2, 9]);
    let got = run(&rows, "k STRING, a_rows BIGINT, b_rows BIGINT", &q);
    assert_eq!(got, vec!["a,0,1", "a,0,1", "a,1,0"]);
}

#[test]
fn patterns_ending_in_a_greedy_quantifier_emit_the_longest_match() {
    // A B+ (Flink rejects it): the match grows while rows fit B and is emitted when a row
    // does not fit, or at the end of the input.
    let rows = series(&[1, 2, 2, 0, 1, 2]);
    let q = query(
        "EXTRACT(SECOND FROM A.ts) AS a_s, COUNT(B.v) AS bs",
        "",
        "AFTER MATCH SKIP PAST LAST ROW",
        "(A B+)",
        "A AS A.v = 1, B AS B.v = 2",
    );
    assert_eq!(
        run(&rows, "k STRING, a_s BIGINT, bs BIGINT", &q),
        vec!["a,0,2", "a,4,1"]
    );
}

#[test]
fn partitions_match_independently_and_results_feed_further_sql() {
    // Two vehicles interleaved (a at even seconds, b at odd ones); only matches with two or
    // more Bs pass the outer WHERE.
    let rows: Vec<Row> = vec![
        ("a", 0, 1),
        ("b", 1, 1),
        ("a", 2, 2),
        ("b", 3, 2),
        ("a", 4, 2),
        ("b", 5, 3),
        ("a", 6, 3),
        ("b", 7, 1),
    ];
    let q = "INSERT INTO out SELECT k, bs * 10 FROM t MATCH_RECOGNIZE (
           PARTITION BY k ORDER BY ts
           MEASURES COUNT(B.v) AS bs
           PATTERN (A B+ C)
           DEFINE A AS A.v = 1, B AS B.v = 2, C AS C.v = 3
         ) WHERE bs >= 2;";
    assert_eq!(run(&rows, "k STRING, bs BIGINT", q), vec!["a,20"]);
    let all = q.replace(" WHERE bs >= 2", "");
    assert_eq!(
        run(&rows, "k STRING, bs BIGINT", &all),
        vec!["a,20", "b,10"]
    );
}

/// Shuffled within the first batch of 3; the last row (second 1) comes after second 7.
const OUT_OF_ORDER: &[Row] = &[
    ("a", 2, 2),
    ("a", 0, 1),
    ("a", 3, 3),
    ("a", 5, 1),
    ("a", 6, 2),
    ("a", 7, 3),
    ("a", 1, 2),
];

#[test]
fn rows_arriving_out_of_order_are_sorted_and_late_ones_counted() {
    // Rows arrive shuffled within a batch and are put in event-time order; the watermark is
    // the row time itself, so the row at second 1 arriving after second 5 (in a later batch)
    // is late: dropped and counted.
    let rows = OUT_OF_ORDER;
    let q = "INSERT INTO out SELECT * FROM t MATCH_RECOGNIZE (
           PARTITION BY k ORDER BY ts
           MEASURES COUNT(B.v) AS bs, EXTRACT(SECOND FROM A.ts) AS a_s
           PATTERN (A B+ C)
           DEFINE A AS A.v = 1, B AS B.v = 2, C AS C.v = 3
         );";
    let (got, stderr) = run_with(rows, "k STRING, bs BIGINT, a_s BIGINT", q, 3);
    assert_eq!(got, vec!["a,1,0", "a,1,5"]);
    assert!(stderr.contains("1 late row"), "{stderr}");
}

#[test]
fn mistakes_are_clear_errors() {
    let bad = |pattern: &str, define: &str| {
        let q = query("COUNT(*) AS c", "", "", pattern, define);
        let (_, stderr) = run_with(&series(&[1]), "k STRING, c BIGINT", &q, 3);
        stderr
    };
    let e = bad("(A*)", "A AS A.v = 1");
    assert!(e.contains("can match zero rows"), "{e}");
    let e = bad("(A B)", "A AS A.v + 1");
    assert!(
        e.contains("DEFINE A must be a condition (BOOLEAN), not BIGINT"),
        "{e}"
    );
    let e = bad("(A B)", "A AS A.speed > 1");
    assert!(e.contains("speed"), "{e}");
    assert!(e.contains("q.sql:"), "{e}");
}

#[test]
fn late_rows_can_go_to_a_side_output() {
    // As above; the late row (second 1) is written whole to table `late`.
    let rows = OUT_OF_ORDER;
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late");
    let q = format!(
        "SET 'table.exec.late-rows' = 'side-output:late';
         CREATE TABLE late (k STRING, ts TIMESTAMP(3), v BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
         INSERT INTO out SELECT * FROM t MATCH_RECOGNIZE (
           PARTITION BY k ORDER BY ts
           MEASURES COUNT(B.v) AS bs
           PATTERN (A B+ C)
           DEFINE A AS A.v = 1, B AS B.v = 2, C AS C.v = 3
         );",
        late.display()
    );
    let got = run(rows, "k STRING, bs BIGINT", &q);
    assert_eq!(got, vec!["a,1", "a,1"]);
    assert_eq!(read_sink_dir(&late), vec!["a,2024-01-01 00:00:01.000,2"]);
}

#[test]
fn further_order_by_columns_order_rows_of_equal_time() {
    // Seconds 0, 1, 1: with ORDER BY ts, v the rows at second 1 are 2 then 3 (A B C matches);
    // with v DESC they are 3 then 2 (no match).
    let rows: Vec<Row> = vec![("a", 0, 1), ("a", 1, 3), ("a", 1, 2)];
    let q = |order: &str| {
        format!(
            "INSERT INTO out SELECT * FROM t MATCH_RECOGNIZE (
               PARTITION BY k ORDER BY {order}
               MEASURES C.v AS c
               PATTERN (A B C)
               DEFINE A AS A.v = 1, B AS B.v = 2, C AS C.v = 3
             );"
        )
    };
    assert_eq!(run(&rows, "k STRING, c BIGINT", &q("ts, v")), vec!["a,3"]);
    assert!(run(&rows, "k STRING, c BIGINT", &q("ts, v DESC")).is_empty());
}

#[test]
fn functions_that_datafusion_only_compiles_simplified_work_in_measures_and_define() {
    // COALESCE and NULLIF exist physically only after simplification, which plan expressions get
    // from the optimizer and MEASURES/DEFINE (planned on their own) must get too. A+ B where A is
    // a row whose NULLIF(v, 0) is not NULL: rows 5 7 then 0 (B); 3 then 0 (B).
    let rows = series(&[5, 7, 0, 3, 0]);
    let q = query(
        "COALESCE(LAST(A.v, 1), -1) AS before_last_a, NULLIF(COUNT(A.v), 1) AS n_a",
        "ONE ROW PER MATCH",
        "AFTER MATCH SKIP PAST LAST ROW",
        "(A+ B)",
        "A AS COALESCE(NULLIF(A.v, 0), -1) > 0",
    );
    let got = run(&rows, "k STRING, before_last_a BIGINT, n_a BIGINT", &q);
    assert_eq!(got, vec!["a,-1,", "a,5,2"]);
}

#[test]
fn prev_conditions_on_interleaved_partitions_whatever_the_batching() {
    // U{2}: two rows in a row, each above the partition's previous row (PREV is physical and may
    // reach before the match). Such conditions are evaluated for a whole released batch at once,
    // so the positions must hold across batches and interleaved partitions.
    // a (even seconds): 1 2 3 1 5 6 → rows 1,2 (s2, s4: 2>1, 3>2), then 4,5 (s8, s10: 5>1, 6>5).
    // b (odd seconds):  5 4 6 7 8 1 → rows 2,3 (s5, s7: 6>4, 7>6); 8>7 then 1 is not above.
    let a = [1, 2, 3, 1, 5, 6];
    let b = [5, 4, 6, 7, 8, 1];
    let rows: Vec<Row> = (0..6)
        .flat_map(|i| [("a", 2 * i as u32, a[i]), ("b", 2 * i as u32 + 1, b[i])])
        .collect();
    let q = query(
        "EXTRACT(SECOND FROM FIRST(U.ts)) AS s, LAST(U.v) AS v",
        "ONE ROW PER MATCH",
        "AFTER MATCH SKIP PAST LAST ROW",
        "(U{2})",
        "U AS U.v > PREV(U.v)",
    );
    for batch_size in [1, 2, 5, 100] {
        let (got, stderr) = run_with(&rows, "k STRING, s BIGINT, v BIGINT", &q, batch_size);
        assert_eq!(
            got,
            vec!["a,2,3", "a,8,6", "b,5,7"],
            "batch {batch_size}: {stderr}"
        );
    }
}
