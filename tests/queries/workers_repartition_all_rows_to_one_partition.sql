-- plan: Repartitioned: pipeline `INSERT INTO top3` keeps state of all its rows together: they all go through topic `workers_repartition_all_rows_to_one_partition.top3.repartition` into its partition 0
-- plan: one subtask
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
