-- plan: WindowAggregate: TUMBLE size=60000ms offset=0ms, keys=1, aggregates=[count(DISTINCT vehicle_id)]
-- plan: → sink `out`
CREATE TABLE t (vehicle_id STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/in.jsonl', 'format' = 'json');
CREATE TABLE out (window_start TIMESTAMP(3), n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out
SELECT window_start, COUNT(DISTINCT vehicle_id)
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end;
