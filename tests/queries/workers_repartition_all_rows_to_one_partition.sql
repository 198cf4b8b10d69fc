-- plan: Repartitioned: pipeline `INSERT INTO fleet_minute (stage 2)` keeps state of all its rows together: they all go through topic `workers_repartition_all_rows_to_one_partition.fleet_minute.repartition` into its partition 0
-- plan: Its first stage aggregates the rows of each source partition where they are (the local phase of two), and sends what it emits once the checkpoint holding it completes
-- plan: (local: partial states per slice)
-- plan: one subtask: it merges the partial aggregates of every subtask (no key)
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE fleet_minute (ws TIMESTAMP(3), readings BIGINT, peak DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO fleet_minute SELECT window_start, COUNT(*), MAX(speed_kmh)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY window_start, window_end;
