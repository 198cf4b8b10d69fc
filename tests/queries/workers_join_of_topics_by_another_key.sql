-- fail: 2:1 pipeline `INSERT INTO out` joins several tables by other columns than their topics' keys; the workers of a job keep state by the columns its topics are partitioned by (their 'key.fields')
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE shifts (driver_id STRING, ts TIMESTAMP(3), depot STRING,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'shifts', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'driver_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE out (vehicle_id STRING, depot STRING) WITH ('connector' = 'blackhole');
-- By driver: the telemetry topic is keyed by vehicle, so a driver's readings and shifts are in
-- different partitions.
INSERT INTO out SELECT t.vehicle_id, s.depot
  FROM telemetry t JOIN shifts s
  ON t.driver_id = s.driver_id AND s.ts BETWEEN t.ts - INTERVAL '1' HOUR AND t.ts;
