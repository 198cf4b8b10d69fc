-- Quick start: no servers needed. The built-in fleet simulator stands in for Kafka; overspeed
-- events are classified and printed. Run it with:  sluice run examples/quickstart.sql

CREATE TABLE telemetry (
  vehicle_id    STRING,
  driver_id     STRING,
  ts            TIMESTAMP(3),
  lat           DOUBLE,
  lon           DOUBLE,
  speed_kmh     DOUBLE,
  accel_ms2     DOUBLE,
  event_type    STRING,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
  'connector'       = 'fleet-sim',
  'vehicles'        = '${VEHICLES:-200}',
  'rows-per-second' = '${RATE:-20000}',
  'number-of-rows'  = '${ROWS:-100000}',
  'seed'            = '7',
  'start-time'      = '2024-03-01 08:00:00'
);

CREATE TABLE overspeed (
  vehicle_id     STRING,
  driver_id      STRING,
  ts             TIMESTAMP(3),
  speed_kmh      DOUBLE,
  over_limit_kmh DOUBLE,
  severity       STRING
) WITH (
  'connector'        = 'print',
  'print-identifier' = 'overspeed'
);

INSERT INTO overspeed
SELECT
  vehicle_id,
  driver_id,
  ts,
  speed_kmh,
  speed_kmh - 120.0 AS over_limit_kmh,
  CASE
    WHEN speed_kmh >= 140 THEN 'severe'
    WHEN speed_kmh >= 130 THEN 'major'
    ELSE 'minor'
  END AS severity
FROM telemetry
WHERE speed_kmh > 120;
