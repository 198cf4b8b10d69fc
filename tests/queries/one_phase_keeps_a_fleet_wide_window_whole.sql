-- plan: Pipeline `INSERT INTO total`  parallelism 1
-- plan: one subtask: `WindowAggregate: TUMBLE size=60000ms offset=0ms, keys=1, aggregates=[count(*)]` has no key column that comes unchanged from its source
SET 'parallelism.default' = '2';
SET 'table.optimizer.agg-phase-strategy' = 'ONE_PHASE';
CREATE TABLE t (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'datagen');
CREATE TABLE total (n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO total SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY window_start, window_end;
