//! Operator state survives a snapshot: run a stream uninterrupted, and run it again with a
//! snapshot mid-stream restored into freshly planned operators; the outputs must be identical
//! (TUMBLE, HOP, CUMULATE and SESSION windows, MATCH_RECOGNIZE with partial matches in flight;
//! out-of-order input).

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use sluice::connectors::print::format_rows;
use sluice::operators::FusedOperators;
use sluice::sql::{Planner, parse_script_with};

const SQL: &str = "
CREATE TABLE t (k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH ('connector' = 'filesystem', 'path' = '/unused', 'format' = 'json');
CREATE TABLE o1 (k STRING, ws TIMESTAMP(3), we TIMESTAMP(3), c BIGINT, s BIGINT, a DOUBLE) WITH ('connector' = 'blackhole');
CREATE TABLE o2 (k STRING, ws TIMESTAMP(3), we TIMESTAMP(3), c BIGINT, s BIGINT, a DOUBLE) WITH ('connector' = 'blackhole');
CREATE TABLE o3 (k STRING, ws TIMESTAMP(3), we TIMESTAMP(3), c BIGINT, s BIGINT, a DOUBLE) WITH ('connector' = 'blackhole');
CREATE TABLE o4 (k STRING, ws TIMESTAMP(3), we TIMESTAMP(3), c BIGINT, s BIGINT, a DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO o1 SELECT k, window_start, window_end, COUNT(*), SUM(v), AVG(v)
  FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY k, window_start, window_end;
INSERT INTO o2 SELECT k, window_start, window_end, COUNT(DISTINCT v), MAX(v), STDDEV(v)
  FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '20' SECOND)) GROUP BY k, window_start, window_end;
INSERT INTO o3 SELECT k, window_start, window_end, COUNT(*), MIN(v), AVG(v)
  FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '4' SECOND, INTERVAL '12' SECOND)) GROUP BY k, window_start, window_end;
INSERT INTO o4 SELECT k, window_start, window_end, COUNT(*), SUM(v), AVG(v)
  FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '3' SECOND)) GROUP BY k, window_start, window_end;
CREATE TABLE o5 (k STRING, first_v BIGINT, n_b BIGINT, avg_b DOUBLE, mn BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO o5 SELECT * FROM t MATCH_RECOGNIZE (PARTITION BY k ORDER BY ts
  MEASURES FIRST(A.v) AS first_v, COUNT(B.v) AS n_b, AVG(B.v) AS avg_b, MATCH_NUMBER() AS mn
  AFTER MATCH SKIP TO NEXT ROW
  PATTERN (A B+ C) WITHIN INTERVAL '5' SECOND
  DEFINE A AS A.v < 50, B AS B.v > LAST(A.v), C AS C.v < PREV(C.v));
CREATE TABLE o6 (k STRING, ts TIMESTAMP(3), v BIGINT, cls STRING, run_n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO o6 SELECT k, ts, v, cls, run_n FROM t MATCH_RECOGNIZE (PARTITION BY k ORDER BY ts
  MEASURES CLASSIFIER() AS cls, COUNT(*) AS run_n
  ALL ROWS PER MATCH
  PATTERN (U{2,} D?)
  DEFINE U AS U.v > PREV(U.v, 1), D AS D.v < 10);
";

async fn chains() -> Vec<FusedOperators> {
    let script = parse_script_with("snap.sql", SQL, |_| None).unwrap();
    let job = Planner::new()
        .plan_script(&script)
        .await
        .unwrap()
        .job
        .unwrap();
    job.pipelines
        .into_iter()
        .map(|p| FusedOperators::new(p.operators))
        .collect()
}

/// Ten batches of out-of-order rows over five keys, with silent gaps that split sessions.
fn batches() -> Vec<(RecordBatch, i64)> {
    let table = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("k", arrow::datatypes::DataType::Utf8, true),
        arrow::datatypes::Field::new(
            "ts",
            arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
            true,
        ),
        arrow::datatypes::Field::new("v", arrow::datatypes::DataType::Int64, true),
    ]));
    let mut state: u64 = 7;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as i64
    };
    let mut out = Vec::new();
    let mut max_seen = i64::MIN;
    for b in 0..10 {
        let (mut ks, mut ts, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..200 {
            let base = (b * 200 + i) as i64 * 150;
            if (base / 9_000) % 4 == 3 {
                continue; // a silent stretch: sessions end
            }
            ks.push(format!("k{}", next() % 5));
            ts.push(base - next() % 1_500);
            vs.push(next() % 100);
        }
        max_seen = max_seen.max(*ts.iter().max().unwrap());
        let batch = RecordBatch::try_new(
            table.clone(),
            vec![
                Arc::new(StringArray::from(ks)),
                Arc::new(TimestampMillisecondArray::from(ts)),
                Arc::new(Int64Array::from(vs)),
            ],
        )
        .unwrap();
        out.push((batch, max_seen - 2_000));
    }
    out
}

fn feed(
    chain: &mut FusedOperators,
    input: &[(RecordBatch, i64)],
    out: &mut Vec<String>,
    last: bool,
) {
    let mut collect = |bs: Vec<RecordBatch>| {
        for b in bs {
            out.extend(format_rows(&b, "").unwrap().lines().map(str::to_string));
        }
    };
    for (batch, wm) in input {
        let emitted = chain.process_batch(batch.clone()).unwrap();
        collect(emitted);
        collect(chain.process_watermark(*wm).unwrap());
    }
    if last {
        collect(chain.process_watermark(i64::MAX).unwrap());
    }
}

#[tokio::test]
async fn operator_state_snapshot_and_restore_gives_identical_output() {
    let input = batches();
    let mut straight = chains().await;
    let mut first = chains().await;
    let mut resumed = chains().await;
    for (i, ((a, b), c)) in straight
        .iter_mut()
        .zip(first.iter_mut())
        .zip(resumed.iter_mut())
        .enumerate()
    {
        let mut expected = Vec::new();
        feed(a, &input, &mut expected, true);

        let mut first_half = Vec::new();
        feed(b, &input[..5], &mut first_half, false);
        let snap = b.snapshot().unwrap();
        assert!(
            snap.iter().any(Option::is_some),
            "pipeline {i}: the operator has state"
        );
        c.restore(&snap).unwrap();
        let mut after_restore = Vec::new();
        feed(c, &input[5..], &mut after_restore, true);

        expected.sort();
        assert!(expected.len() > 20, "pipeline {i}: {} rows", expected.len());
        let mut got = [first_half.clone(), after_restore].concat();
        got.sort();
        assert_eq!(got, expected, "pipeline {i} differs after restore");

        // Taking a snapshot does not disturb the operator it was taken from.
        let mut continued = Vec::new();
        feed(b, &input[5..], &mut continued, true);
        let mut unbroken = [first_half, continued].concat();
        unbroken.sort();
        assert_eq!(
            unbroken, expected,
            "pipeline {i}: snapshotting changed the source operator"
        );
    }
}
