-- fail: 6:44 temporal joins (`FOR SYSTEM_TIME AS OF`) are not supported yet
CREATE TABLE t (vehicle_id STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/in.jsonl', 'format' = 'json');
CREATE TABLE v (vehicle_id STRING, model STRING)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/v.jsonl', 'format' = 'json');
SELECT t.vehicle_id, v.model FROM t JOIN v FOR SYSTEM_TIME AS OF t.ts ON t.vehicle_id = v.vehicle_id;
