-- plan: Repartitioned: pipeline `INSERT INTO out` keeps state by driver_id, not by the topic's key: its rows go through topic `workers_repartition_by_another_key.out.repartition` (a partition per partition of `telemetry`, by hash of driver_id)
-- plan: ← source #0 `telemetry`, rows spread by hash of driver_id
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE out (driver_id STRING, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out SELECT driver_id, COUNT(*)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY driver_id, window_start, window_end;
