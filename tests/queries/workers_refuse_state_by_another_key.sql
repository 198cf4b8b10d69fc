-- fail: 2:1 'sluice.workers' = 'kafka-group': pipeline `INSERT INTO out` keeps state by driver_id; the workers of a job keep state only by the columns its topic is partitioned by (`telemetry`'s 'key.fields': vehicle_id)
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE out (driver_id STRING, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out SELECT driver_id, COUNT(*)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY driver_id, window_start, window_end;
