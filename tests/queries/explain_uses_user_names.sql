-- plan: aggregates=[max(driver_id), count(*)]
-- plan: clickhouse http://127.0.0.1:8123 table=default.out batch=100000 exactly-once with checkpoints
-- plan: count(*)]  [state: out/window-aggregate]
CREATE TABLE t (vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/in.jsonl', 'format' = 'json');
CREATE TABLE out (vehicle_id STRING, d STRING, n BIGINT)
  WITH ('connector' = 'clickhouse', 'url' = 'http://127.0.0.1:8123');
INSERT INTO out
SELECT vehicle_id, MAX(driver_id), COUNT(*)
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY vehicle_id, window_start, window_end;
