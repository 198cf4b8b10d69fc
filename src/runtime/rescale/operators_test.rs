//! Every keyed operator, planned from SQL, run as 2 subtasks, rescaled to 3, then to 1: the
//! rows that come out equal those of one task that never stopped.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::spread;
use crate::connectors::print::format_rows;
use crate::operators::FusedOperators;
use crate::plan::{Parallelism, PipelineNode};
use crate::runtime::exchange::KeyRouter;
use crate::sql::{Planner, parse_script_with};
use crate::stream::new_watermark_cell;

const KEY_GROUPS: u32 = 128;

const SQL: &str = "
SET 'parallelism.default' = '2';
CREATE TABLE t (k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH ('connector' = 'filesystem', 'path' = '/unused', 'format' = 'json');
CREATE TABLE u (k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH ('connector' = 'filesystem', 'path' = '/unused', 'format' = 'json');
CREATE TABLE lim (k STRING, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND,
  PRIMARY KEY (k) NOT ENFORCED)
  WITH ('connector' = 'filesystem', 'path' = '/unused', 'format' = 'json');
CREATE TABLE kvv (k STRING, a BIGINT, b BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE ktv (k STRING, ts TIMESTAMP(3), v BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE ktvn (k STRING, ts TIMESTAMP(3), v BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO kvv SELECT t.k, t.v, u.v FROM t JOIN u ON t.k = u.k;
INSERT INTO kvv SELECT t.k, t.v, u.v FROM t, u
  WHERE t.k = u.k AND u.ts BETWEEN t.ts - INTERVAL '2' SECOND AND t.ts + INTERVAL '2' SECOND;
INSERT INTO kvv SELECT l.k, l.n, r.n
  FROM (SELECT k, window_start, window_end, COUNT(*) AS n
    FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY k, window_start, window_end) l
  JOIN (SELECT k, window_start, window_end, COUNT(*) AS n
    FROM TABLE(TUMBLE(TABLE u, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY k, window_start, window_end) r
  ON l.k = r.k AND l.window_start = r.window_start AND l.window_end = r.window_end;
INSERT INTO kvv SELECT b.k, b.v, l.v FROM t AS b LEFT JOIN lim FOR SYSTEM_TIME AS OF b.ts AS l ON b.k = l.k;
INSERT INTO ktv SELECT k, ts, v FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn FROM t) WHERE rn = 1;
INSERT INTO ktv SELECT k, ts, v FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC) AS rn FROM t) WHERE rn = 1;
INSERT INTO ktvn SELECT k, ts, v, rn FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t) WHERE rn <= 2;
INSERT INTO ktvn SELECT k, window_start, s, rn FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, k ORDER BY s DESC) AS rn
  FROM (SELECT k, v % 4 AS g, window_start, window_end, SUM(v) AS s
    FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND))
    GROUP BY k, v % 4, window_start, window_end)) WHERE rn <= 2;
INSERT INTO ktv SELECT k, ts, SUM(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t;
INSERT INTO kvv SELECT k, COUNT(*), SUM(v) FROM t GROUP BY k;
INSERT INTO ktvn SELECT k, window_start, SUM(v), COUNT(*)
  FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '6' SECOND))
  GROUP BY k, window_start, window_end;
INSERT INTO ktvn SELECT k, window_start, SUM(v), COUNT(*)
  FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '1' SECOND))
  GROUP BY k, window_start, window_end;
INSERT INTO ktvn SELECT * FROM t MATCH_RECOGNIZE (PARTITION BY k ORDER BY ts
  MEASURES FIRST(A.ts) AS ts, LAST(B.v) AS v, COUNT(B.v) AS n
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (A B+) WITHIN INTERVAL '4' SECOND
  DEFINE A AS A.v < 30, B AS B.v > PREV(B.v));
";

/// Steps of out-of-order rows over twelve keys for each of `tables`, with the watermark after
/// each (the lowest over the tables).
fn steps(tables: usize) -> Vec<(Vec<RecordBatch>, i64)> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("v", DataType::Int64, true),
    ]));
    let mut state: u64 = 11;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as i64
    };
    let mut max_seen = 0;
    (0..12)
        .map(|step| {
            let batches = (0..tables)
                .map(|_| {
                    let (mut ks, mut ts, mut vs) = (Vec::new(), Vec::new(), Vec::new());
                    for i in 0..60 {
                        let base = (step * 60 + i) * 100;
                        ks.push(format!("k{}", next() % 12));
                        ts.push(base - next() % 1_500);
                        vs.push(next() % 100);
                    }
                    max_seen = max_seen.max(*ts.iter().max().unwrap());
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![
                            Arc::new(StringArray::from(ks)),
                            Arc::new(TimestampMillisecondArray::from(ts)),
                            Arc::new(Int64Array::from(vs)),
                        ],
                    )
                    .unwrap()
                })
                .collect();
            (batches, max_seen - 2_000)
        })
        .collect()
}

/// The subtasks of one pipeline at some parallelism, fed as the runtime feeds them.
struct Subtasks<'a> {
    node: &'a PipelineNode,
    parallelism: Parallelism,
    chains: Vec<FusedOperators>,
    /// Table index (in `steps`' order) of each pipeline input.
    tables: Vec<usize>,
}

impl<'a> Subtasks<'a> {
    fn new(node: &'a PipelineNode, parallelism: Parallelism, tables: Vec<usize>) -> Self {
        let chains = (0..parallelism.subtasks())
            .map(|_| {
                let mut c =
                    FusedOperators::new(node.operators.instance(&new_watermark_cell()).unwrap());
                c.open().unwrap();
                c
            })
            .collect();
        Subtasks {
            node,
            parallelism,
            chains,
            tables,
        }
    }

    fn collect(out: &mut Vec<String>, batches: Vec<RecordBatch>) {
        for b in batches {
            out.extend(format_rows(&b, "").unwrap().lines().map(str::to_string));
        }
    }

    /// The end of input: a watermark at +∞.
    fn end(&mut self, out: &mut Vec<String>) {
        for chain in &mut self.chains {
            Self::collect(out, chain.process_watermark(i64::MAX).unwrap());
        }
    }

    fn feed(&mut self, steps: &[(Vec<RecordBatch>, i64)], out: &mut Vec<String>) {
        let n = self.chains.len();
        for (batches, watermark) in steps {
            for (input, &source) in self.node.inputs.iter().enumerate() {
                let batch = &batches[self.tables[input]];
                let parts = match &self.parallelism {
                    Parallelism::Keyed { keys, .. } => {
                        KeyRouter::new(keys[input].clone(), n, KEY_GROUPS)
                            .split(batch)
                            .unwrap()
                    }
                    Parallelism::Single { .. }
                    | Parallelism::Spread { .. }
                    | Parallelism::Partitions { .. } => vec![Some(batch.clone())],
                };
                for (chain, part) in self.chains.iter_mut().zip(parts) {
                    if let Some(part) = part {
                        Self::collect(out, chain.process_input(source, part).unwrap());
                    }
                }
            }
            for chain in &mut self.chains {
                Self::collect(out, chain.process_watermark(*watermark).unwrap());
            }
        }
    }

    /// Every subtask's snapshot, spread over the subtasks of `parallelism`.
    fn rescaled(mut self, parallelism: Parallelism) -> Subtasks<'a> {
        let snapshots: Vec<Vec<Option<Vec<u8>>>> = self
            .chains
            .iter_mut()
            .map(|c| c.snapshot().unwrap())
            .collect();
        let old: Vec<Vec<Option<&[u8]>>> = snapshots
            .iter()
            .map(|s| s.iter().map(Option::as_deref).collect())
            .collect();
        let states = spread(self.node, &parallelism, &old, KEY_GROUPS).unwrap();
        let mut next = Subtasks::new(self.node, parallelism, self.tables);
        for (chain, state) in next.chains.iter_mut().zip(states) {
            chain.restore(&state).unwrap();
        }
        next
    }
}

#[tokio::test]
async fn every_keyed_operator_gives_one_tasks_rows_across_rescales() {
    let script = parse_script_with("rescale.sql", SQL, |_| None).unwrap();
    let job = Planner::new()
        .plan_script(&script)
        .await
        .unwrap()
        .job
        .unwrap();
    let steps = steps(3);
    let table_of = |source: usize| {
        ["t", "u", "lim"]
            .iter()
            .position(|t| *t == job.sources[source].table)
            .unwrap()
    };
    assert_eq!(job.pipelines.len(), 13);
    for node in &job.pipelines {
        let described = node
            .operators
            .iter()
            .map(|o| o.describe())
            .collect::<Vec<_>>()
            .join(" → ");
        let Parallelism::Keyed { keys, .. } = &node.parallelism else {
            panic!("{described} runs as subtasks: {:?}", node.parallelism);
        };
        let tables: Vec<usize> = node.inputs.iter().map(|&s| table_of(s)).collect();

        let single = || Parallelism::Single { reason: None };
        let mut want = Vec::new();
        let mut one = Subtasks::new(node, single(), tables.clone());
        one.feed(&steps, &mut want);
        one.end(&mut want);

        let mut got = Vec::new();
        let mut two = Subtasks::new(node, node.parallelism.clone(), tables);
        two.feed(&steps[..4], &mut got);
        let three = Parallelism::Keyed {
            subtasks: 3,
            keys: keys.clone(),
        };
        let mut three = two.rescaled(three);
        three.feed(&steps[4..8], &mut got);
        let mut one_again = three.rescaled(single());
        one_again.feed(&steps[8..], &mut got);
        one_again.end(&mut got);

        want.sort();
        got.sort();
        assert!(want.len() > 10, "{described}: {} rows", want.len());
        assert!(
            got == want,
            "{described}: {} rows, {} expected",
            got.len(),
            want.len()
        );
    }
}
