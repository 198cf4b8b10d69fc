-- plan: Repartitioned: pipeline `INSERT INTO top_drivers (stage 1)` keeps state by driver_id, not by the topic's key: its rows go through topic `workers_stage_keyed_by_another_key_before_a_repartition.top_drivers.stage-1.repartition`
-- plan: Repartitioned: pipeline `INSERT INTO top_drivers (stage 2)` keeps state by window_start, window_end, not by the topic's key: its rows go through topic `workers_stage_keyed_by_another_key_before_a_repartition.top_drivers.repartition`
-- plan: Its first stage keeps state by driver_id, and sends what it emits once the checkpoint holding it completes
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE top_drivers (ws TIMESTAMP(3), driver_id STRING, readings BIGINT, rn BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO top_drivers SELECT window_start, driver_id, readings, rn FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY readings DESC) AS rn
  FROM (SELECT driver_id, window_start, window_end, COUNT(*) AS readings
    FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY driver_id, window_start, window_end))
WHERE rn <= 3;
