-- plan: Workers: every process running this file is a worker of job `workers_keep_state_by_the_topic_key` (consumer group `sluice-workers_keep_state_by_the_topic_key`)
-- plan: WindowAggregate: TUMBLE size=60000ms
-- plan: ← source #0 `telemetry`, rows spread by hash of vehicle_id
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE out (vehicle_id STRING, driver_id STRING, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out SELECT vehicle_id, driver_id, COUNT(*)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY vehicle_id, driver_id, window_start, window_end;
