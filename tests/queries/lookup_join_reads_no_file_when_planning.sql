-- plan: LookupJoin[inner, `depots` read at start, then Filter
-- plan: decodes only: vehicle_id, depot, ts
CREATE TABLE t (vehicle_id STRING, depot STRING, speed DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/in.jsonl', 'format' = 'json');
CREATE TABLE depots (id STRING, city STRING, open BOOLEAN)
  WITH ('connector' = 'filesystem', 'path' = '${TMP}/depots.jsonl', 'format' = 'json');
CREATE TABLE out (vehicle_id STRING, city STRING) WITH ('connector' = 'blackhole');
INSERT INTO out SELECT t.vehicle_id, d.city FROM t JOIN depots d ON t.depot = d.id WHERE d.open;
