-- plan: updating aggregate count(*), sum(readings.speed) per 0 key(s) (local: partial states per mini-batch)
-- plan: updating aggregate count(*), sum(readings.speed) per 0 key(s) (global: merges the partial states)
-- plan: one subtask: it merges the partial aggregates of every subtask (no key)
-- An updating aggregate without a key, in mini-batches: local phases on every subtask, one global
-- phase (Flink's local-global aggregation needs mini-batches too).
SET 'parallelism.default' = '2';
SET 'table.exec.mini-batch.enabled' = 'true';
SET 'table.exec.mini-batch.allow-latency' = '1 s';
SET 'table.exec.mini-batch.size' = '1000';
CREATE TABLE readings (vehicle_id STRING, speed DOUBLE)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/r.jsonl', 'format' = 'json');
CREATE TABLE totals (n BIGINT, s DOUBLE) WITH ('connector' = 'print');
INSERT INTO totals SELECT COUNT(*), SUM(speed) FROM readings;
