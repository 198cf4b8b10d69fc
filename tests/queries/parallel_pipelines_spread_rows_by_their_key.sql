-- plan: Source #0 `t`  parallelism 1
-- plan: Pipeline `INSERT INTO per_key`  parallelism 3
-- plan: ← source #0 `t`, rows spread by hash of k
-- plan: Pipeline `INSERT INTO joined`  parallelism 3
-- plan: ← source #0 `t`, rows spread by hash of k
-- plan: ← source #1 `u`, rows spread by hash of id
-- plan: Pipeline `INSERT INTO windows_joined`  parallelism 3
-- plan: ← source #1 `u`, rows spread by hash of id
-- plan: Pipeline `INSERT INTO total (stage 1)`  parallelism 3
-- plan: ← source #0 `t`, batches to the subtasks in turn
-- plan: aggregates=[count(*)] (local: partial states per slice)
-- plan: Pipeline `INSERT INTO total (stage 2)`  parallelism 1
-- plan: one subtask: it merges the partial aggregates of every subtask (no key)
-- plan: aggregates=[count(*)] (global: merges the partial states)
-- plan: Pipeline `INSERT INTO copied`  parallelism 1
-- plan: one subtask: it keeps no keyed state
-- plan: Pipeline `INSERT INTO top_per_window (stage 1)`  parallelism 3
-- plan: [state: top_per_window~1/window-aggregate]
-- plan: → stage `top_per_window`
-- plan: Pipeline `INSERT INTO top_per_window (stage 2)`  parallelism 3
-- plan: ← stage `top_per_window~1`, rows spread by hash of window_start, window_end
-- plan: Pipeline `INSERT INTO by_upper (stage 2)`  parallelism 3
-- plan: ← stage `by_upper~1`, rows spread by hash of upper(k)
SET 'parallelism.default' = '3';
CREATE TABLE t (k STRING, v DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'datagen');
CREATE TABLE u (id STRING, w DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'datagen');
CREATE TABLE per_key (k STRING, n BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE joined (k STRING, v DOUBLE, w DOUBLE) WITH ('connector' = 'blackhole');
CREATE TABLE total (n BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE copied (k STRING) WITH ('connector' = 'blackhole');
CREATE TABLE top_per_window (k STRING, n BIGINT, rn BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE by_upper (k STRING, n BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE windows_joined (k STRING, n BIGINT, m BIGINT) WITH ('connector' = 'blackhole');
-- A key computed from the row's columns still routes by the column behind it: UPPER(k) keeps
-- each k in one subtask.
INSERT INTO per_key SELECT k, COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  WHERE v > 0 GROUP BY k, UPPER(k), window_start, window_end;
INSERT INTO joined SELECT t.k, t.v, u.w FROM t JOIN u
  ON t.k = u.id AND u.ts BETWEEN t.ts - INTERVAL '5' SECOND AND t.ts;
-- A window aggregate over the window alone: two phases, local on every subtask, then one global.
INSERT INTO total SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY window_start, window_end;
INSERT INTO copied SELECT k FROM t WHERE v > 1;
-- Keyed two ways (per key, then per window): two stages, rows exchanged by window between.
INSERT INTO top_per_window SELECT k, n, rn FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY n DESC) AS rn
  FROM (SELECT k, window_start, window_end, COUNT(*) AS n
    FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY k, window_start, window_end))
  WHERE rn <= 3;
-- Only a computed key: local phases, then global phases spread by the computed key.
INSERT INTO by_upper SELECT UPPER(k), COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY UPPER(k), window_start, window_end;
-- Aggregates per key on each of two tables, joined per window: each table spread by its key.
INSERT INTO windows_joined SELECT a.k, a.n, b.m
  FROM (SELECT k, window_start, window_end, COUNT(*) AS n
    FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY k, window_start, window_end) a
  JOIN (SELECT id, window_start, window_end, COUNT(*) AS m
    FROM TABLE(TUMBLE(TABLE u, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY id, window_start, window_end) b
  ON a.k = b.id AND a.window_start = b.window_start AND a.window_end = b.window_end;
