-- plan: Repartitioned: pipeline `INSERT INTO per_depot` keeps state by depot, not by the topic's key: its rows go through topic `workers_repartition_a_second_topic.per_depot.repartition`
-- plan: Co-partitioned: `shifts` with `telemetry`
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE telemetry (vehicle_id STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'telemetry', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE shifts (vehicle_id STRING, depot STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'shifts', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE per_vehicle (vehicle_id STRING, n BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE per_depot (depot STRING, n BIGINT) WITH ('connector' = 'blackhole');
-- The second topic's rows by another key than its own go through a repartition topic too.
INSERT INTO per_vehicle SELECT vehicle_id, COUNT(*)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY vehicle_id, window_start, window_end;
INSERT INTO per_depot SELECT depot, COUNT(*)
  FROM TABLE(TUMBLE(TABLE shifts, DESCRIPTOR(ts), INTERVAL '1' HOUR))
  GROUP BY depot, window_start, window_end;
