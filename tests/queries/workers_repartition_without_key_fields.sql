-- plan: Repartitioned: pipeline `INSERT INTO out` keeps state by vehicle_id, not by the topic's key: its rows go through topic `workers_repartition_without_key_fields.out.repartition`
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE out (vehicle_id STRING, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out SELECT vehicle_id, COUNT(*)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY vehicle_id, window_start, window_end;
