-- plan: LookupJoin[inner, `v` read at start, 1 equality key(s)]
-- (Flink's lookup-join syntax: FOR SYSTEM_TIME AS OF a bounded table is a lookup join)
CREATE TABLE t (vehicle_id STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/in.jsonl', 'format' = 'json');
CREATE TABLE v (vehicle_id STRING, model STRING)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/v.jsonl', 'format' = 'json');
SELECT t.vehicle_id, v.model FROM t JOIN v FOR SYSTEM_TIME AS OF t.ts ON t.vehicle_id = v.vehicle_id;
