-- output: t
-- output: ts TIMESTAMP(3)  AS CAST(t AS TIMESTAMP(3))
-- output: WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
-- output: Pipeline `SELECT (line 9)`
CREATE TABLE t (t STRING, ts AS CAST(t AS TIMESTAMP(3)), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/in.jsonl', 'format' = 'json');
SHOW TABLES;
DESCRIBE t;
EXPLAIN SELECT t FROM t;
