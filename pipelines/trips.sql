-- Trip intelligence (docs/fleet.md): a trip is a SESSION window of a vehicle's readings with a
-- 5-minute gap (so a parking of under 5 minutes does not end it), into fleet.trips: start, end,
-- duration, distance (TRACK_DISTANCE_KM: the haversine steps between consecutive readings in
-- event-time order), idle time (standing with the engine on; one reading per second), average
-- speed (distance over duration) and top speed.
--
--   sluice run pipelines/trips.sql
--
-- Environment: KAFKA_BROKERS, TELEMETRY_TOPIC, CLICKHOUSE_URL / _USER / _PASSWORD / _DATABASE
-- (defaults: the local test servers, database fleet); SCAN_STARTUP_MODE=earliest-offset with
-- SCAN_BOUNDED_MODE=latest-offset replays a topic once and stops.

SET 'pipeline.name' = 'fleet-trips';

CREATE TABLE telemetry (
  vehicle_id    STRING,
  driver_id     STRING,
  ts            TIMESTAMP(3),
  lat           DOUBLE,
  lon           DOUBLE,
  speed_kmh     DOUBLE,
  accel_ms2     DOUBLE,
  engine_temp_c DOUBLE,
  fuel_pct      DOUBLE,
  event_type    STRING,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = '${TELEMETRY_TOPIC:-fleet.telemetry.raw}',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:19092}',
  'properties.group.id' = 'sluice-trips',
  'scan.startup.mode' = '${SCAN_STARTUP_MODE:-group-offsets}',
  'properties.auto.offset.reset' = 'earliest',
  'scan.bounded.mode' = '${SCAN_BOUNDED_MODE:-unbounded}',
  'scan.watermark.idle-timeout' = '30 s',
  'format' = 'json',
  'json.ignore-parse-errors' = 'true',
  -- Keyed by vehicle (sluice gen fleet): with 'sluice.workers', per-vehicle state needs no
  -- repartition topic (docs/scaling.md).
  'key.format' = 'raw',
  'key.fields' = 'vehicle_id'
);

CREATE TABLE trips_clickhouse (
  trip_id       STRING,
  vehicle_id    STRING,
  driver_id     STRING,
  start_ts      TIMESTAMP(3),
  end_ts        TIMESTAMP(3),
  duration_s    INT,
  distance_km   DOUBLE,
  idle_s        BIGINT,
  avg_speed_kmh DOUBLE,
  max_speed_kmh DOUBLE,
  readings      BIGINT
) WITH (
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'trips',
  'sink.flush-interval' = '5 s'
);

CREATE VIEW trips AS
SELECT
  vehicle_id,
  -- Drivers change only at ignition_on, the first reading of a trip.
  MAX(driver_id)                                                        AS driver_id,
  MIN(ts)                                                               AS start_ts,
  MAX(ts)                                                               AS end_ts,
  TIMESTAMPDIFF(SECOND, MIN(ts), MAX(ts))                               AS duration_s,
  TRACK_DISTANCE_KM(ts, lat, lon)                                       AS distance_km,
  SUM(CASE WHEN speed_kmh < 1 AND event_type = 'telemetry' THEN 1 ELSE 0 END) AS idle_s,
  MAX(speed_kmh)                                                        AS max_speed_kmh,
  COUNT(*)                                                              AS readings
FROM TABLE(SESSION(TABLE telemetry PARTITION BY vehicle_id, DESCRIPTOR(ts), INTERVAL '5' MINUTE))
GROUP BY window_start, window_end, vehicle_id;

INSERT INTO trips_clickhouse
SELECT
  CONCAT(vehicle_id, '-', CAST(CAST(start_ts AS BIGINT) AS STRING)) AS trip_id,
  vehicle_id,
  driver_id,
  start_ts,
  end_ts,
  duration_s,
  ROUND(distance_km, 3) AS distance_km,
  idle_s,
  CASE WHEN duration_s > 0 THEN ROUND(distance_km * 3600.0 / duration_s, 2) END AS avg_speed_kmh,
  max_speed_kmh,
  readings
FROM trips;
