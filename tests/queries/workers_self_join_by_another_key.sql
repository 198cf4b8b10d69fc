-- plan: Repartitioned: pipeline `INSERT INTO out` keeps state by driver_id, not by the topic's key: its rows go through topic `workers_self_join_by_another_key.out.repartition` (a partition per partition of `telemetry`, by hash of driver_id)
-- plan: interval join Inner on 1 key(s), right time − left time in [0 ms, 60000 ms] and a condition  ← source #0, source #0
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE out (driver_id STRING, first_vehicle STRING, second_vehicle STRING, ts TIMESTAMP(3))
  WITH ('connector' = 'blackhole');
-- A driver in two vehicles within a minute: both sides' rows meet by driver, wherever their
-- vehicles' partitions are.
INSERT INTO out SELECT b.driver_id, a.vehicle_id, b.vehicle_id, b.ts
  FROM telemetry a JOIN telemetry b
  ON a.driver_id = b.driver_id AND a.vehicle_id <> b.vehicle_id
  AND a.ts BETWEEN b.ts - INTERVAL '1' MINUTE AND b.ts;
