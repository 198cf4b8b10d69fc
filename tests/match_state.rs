//! MATCH_RECOGNIZE memory: rows are freed once no match can contain them. A pattern that never
//! completes keeps its rows without WITHIN (the risk the docs name, visible as buffered rows),
//! and stays bounded with WITHIN.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sluice::operators::FusedOperators;
use sluice::sql::{Planner, parse_script_with};

async fn chain(pattern_tail: &str) -> FusedOperators {
    let sql = format!(
        "CREATE TABLE t (k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts)
           WITH ('connector' = 'filesystem', 'path' = '/unused', 'format' = 'json');
         CREATE TABLE o (k STRING, n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO o SELECT * FROM t MATCH_RECOGNIZE (
           PARTITION BY k ORDER BY ts MEASURES COUNT(B.v) AS n
           PATTERN (A B+ C) {pattern_tail}
           DEFINE A AS A.v = 1, B AS B.v = 2, C AS C.v = 3);"
    );
    let script = parse_script_with("state.sql", &sql, |_| None).unwrap();
    let job = Planner::new()
        .plan_script(&script)
        .await
        .unwrap()
        .job
        .unwrap();
    let p = job.pipelines.into_iter().next().unwrap();
    FusedOperators::new(p.operators)
}

/// 100 batches of 100 rows, one per 10 ms, over 10 keys: with `starts`, each key starts an A and
/// then only sees Bs, so its match never completes; without, no row can start a match. Returns
/// the buffered rows after each batch.
fn run(chain: &mut FusedOperators, starts: bool) -> Vec<u64> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("v", DataType::Int64, true),
    ]));
    let mut buffered = Vec::new();
    for b in 0..100i64 {
        let rows = 0..100i64;
        let ts: Vec<i64> = rows.clone().map(|i| (b * 100 + i) * 10).collect();
        let keys: Vec<String> = rows.clone().map(|i| format!("k{}", i % 10)).collect();
        let vs: Vec<i64> = rows
            .map(|i| if starts && b == 0 && i < 10 { 1 } else { 2 })
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(TimestampMillisecondArray::from(ts.clone())),
                Arc::new(Int64Array::from(vs)),
            ],
        )
        .unwrap();
        assert!(chain.process_batch(batch).unwrap().is_empty());
        assert!(
            chain
                .process_watermark(*ts.last().unwrap())
                .unwrap()
                .is_empty()
        );
        buffered.push(chain.buffered_rows());
    }
    buffered
}

#[tokio::test]
async fn an_endless_partial_match_keeps_its_rows_without_within() {
    let mut c = chain("").await;
    let buffered = run(&mut c, true);
    // Every row since each key's A is part of the open attempt.
    assert_eq!(*buffered.last().unwrap(), 10_000);
}

#[tokio::test]
async fn within_bounds_the_rows_kept() {
    let mut c = chain("WITHIN INTERVAL '5' SECOND").await;
    let buffered = run(&mut c, true);
    // Each batch spans one second. The attempts started at 0..90 ms grow until the watermark
    // passes 5 s (batch 5), then expire; no key starts another (no new A), so nothing is kept.
    assert_eq!(buffered[..6], [100, 200, 300, 400, 500, 0], "{buffered:?}");
    assert_eq!(*buffered.last().unwrap(), 0, "{buffered:?}");
}

#[tokio::test]
async fn rows_that_cannot_start_a_match_are_not_kept() {
    // No A anywhere: every row is released by the watermark and dropped at once, WITHIN or not.
    let mut c = chain("").await;
    assert!(run(&mut c, false).iter().all(|&b| b == 0));
}
