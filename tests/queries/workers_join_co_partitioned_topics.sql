-- plan: one subtask per partition of `telemetry` it owns, fed by that partition of each topic;
-- plan: Co-partitioned: `status` with `telemetry` (as many partitions, keyed alike by the same partitioner): partition k of each comes to the worker owning partition k of `telemetry`.
-- plan: ← source #1 `status`, rows spread by hash of vehicle_id
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE status (vehicle_id STRING, ts TIMESTAMP(3), state STRING,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'status', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE out (vehicle_id STRING, speed_kmh DOUBLE, state STRING) WITH ('connector' = 'blackhole');
-- Each reading with the vehicle's status reports of the minute before: both topics keyed by
-- vehicle, so partition k of each meets in one task and no row moves.
INSERT INTO out SELECT t.vehicle_id, t.speed_kmh, s.state
  FROM telemetry t JOIN status s
  ON t.vehicle_id = s.vehicle_id AND s.ts BETWEEN t.ts - INTERVAL '1' MINUTE AND t.ts;
