-- Real-time pass-through alerts (FLEET.md §5, the stateless part): SOS and crash events and
-- engine over-temperature, from Kafka to the Kafka topic fleet.alerts within milliseconds.
-- Alerts that need state (idling, geofence dwell, harsh-braking patterns) join this file as
-- the window and MATCH_RECOGNIZE operators land.
--
--   sluice run pipelines/alerts.sql

SET 'pipeline.name' = 'fleet-alerts';

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
  'topic' = 'fleet.telemetry.raw',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:19092}',
  'properties.group.id' = 'sluice-alerts',
  'scan.startup.mode' = 'latest-offset',
  'format' = 'json',
  'json.ignore-parse-errors' = 'true'
);

CREATE TABLE fleet_alerts (
  alert_id    STRING,
  vehicle_id  STRING,
  driver_id   STRING,
  alert_type  STRING,
  severity    STRING,
  ts          TIMESTAMP(3),
  lat         DOUBLE,
  lon         DOUBLE,
  detail      STRING
) WITH (
  'connector' = 'kafka',
  'topic' = 'fleet.alerts',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:19092}',
  'format' = 'json',
  'key.format' = 'raw',
  'key.fields' = 'vehicle_id'
);

INSERT INTO fleet_alerts
SELECT
  CONCAT(vehicle_id, '-', event_type, '-', CAST(CAST(ts AS BIGINT) AS STRING)) AS alert_id,
  vehicle_id,
  driver_id,
  CASE WHEN event_type IN ('sos', 'crash') THEN event_type ELSE 'engine_over_temperature' END AS alert_type,
  CASE WHEN event_type IN ('sos', 'crash') THEN 'critical' ELSE 'warning' END AS severity,
  ts,
  lat,
  lon,
  CASE
    WHEN event_type IN ('sos', 'crash') THEN CONCAT('speed ', CAST(speed_kmh AS STRING), ' km/h')
    ELSE CONCAT('engine ', CAST(engine_temp_c AS STRING), ' °C')
  END AS detail
FROM telemetry
WHERE event_type IN ('sos', 'crash') OR engine_temp_c > ${MAX_ENGINE_TEMP_C:-110};
