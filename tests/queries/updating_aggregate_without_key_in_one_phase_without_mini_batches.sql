-- plan: updating aggregate count(*) per 0 key(s)
-- plan: one subtask: `updating aggregate count(*) per 0 key(s)` has no key column
-- Without mini-batches, as in Flink, an updating aggregate without a key runs in one phase.
SET 'parallelism.default' = '2';
CREATE TABLE readings (vehicle_id STRING, speed DOUBLE)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/r.jsonl', 'format' = 'json');
CREATE TABLE totals (n BIGINT) WITH ('connector' = 'print');
INSERT INTO totals SELECT COUNT(*) FROM readings;
