-- plan: idle timeout: 5s
SET 'table.exec.source.idle-timeout' = '5 s';
CREATE TABLE t (vehicle_id STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/in.jsonl', 'format' = 'json');
SELECT vehicle_id FROM t;
