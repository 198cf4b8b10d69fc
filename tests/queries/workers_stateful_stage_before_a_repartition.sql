-- plan: Repartitioned: pipeline `INSERT INTO top3 (stage 2)` keeps state by window_start, window_end, not by the topic's key: its rows go through topic `workers_stateful_stage_before_a_repartition.top3.repartition`
-- plan: Its first stage keeps state by vehicle_id, the topic's key, where each source partition is, and sends what it emits once the checkpoint holding it completes
-- plan: Pipeline `INSERT INTO top3 (stage 1)`
-- plan: ← source #0 `telemetry`, rows spread by hash of vehicle_id
-- plan: ← stage `top3~1`, rows spread by hash of window_start, window_end
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE top3 (ws TIMESTAMP(3), vehicle_id STRING, peak DOUBLE, rn BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO top3 SELECT window_start, vehicle_id, peak, rn FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY peak DESC) AS rn
  FROM (SELECT vehicle_id, window_start, window_end, MAX(speed_kmh) AS peak
    FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY vehicle_id, window_start, window_end))
WHERE rn <= 3;
