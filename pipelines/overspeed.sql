-- Overspeed: telemetry from Kafka, speeds over the limit classified by severity, written to the
-- Kafka topic fleet.overspeed (keyed by vehicle) and printed.
--
--   sluice gen fleet --brokers 127.0.0.1:19092 --topic fleet.telemetry.raw --vehicles 500 --rate 5000
--   sluice run pipelines/overspeed.sql

SET 'pipeline.name' = 'fleet-overspeed';

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
  ingested_at   TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'fleet.telemetry.raw',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:19092}',
  'properties.group.id' = 'sluice-overspeed',
  'scan.startup.mode' = 'group-offsets',
  'properties.auto.offset.reset' = 'earliest',
  'scan.watermark.idle-timeout' = '30 s',
  'format' = 'json',
  'json.ignore-parse-errors' = 'true',
  -- Keyed by vehicle (sluice gen fleet): with 'sluice.workers', per-vehicle state needs no
  -- repartition topic (docs/scaling.md).
  'key.format' = 'raw',
  'key.fields' = 'vehicle_id'
);

CREATE TABLE overspeed_events (
  vehicle_id     STRING,
  driver_id      STRING,
  ts             TIMESTAMP(3),
  speed_kmh      DOUBLE,
  over_limit_kmh DOUBLE,
  severity       STRING,
  lat            DOUBLE,
  lon            DOUBLE
) WITH (
  'connector' = 'kafka',
  'topic' = 'fleet.overspeed',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:19092}',
  'format' = 'json',
  'key.format' = 'raw',
  'key.fields' = 'vehicle_id'
);

CREATE TABLE console (
  vehicle_id STRING,
  ts         TIMESTAMP(3),
  speed_kmh  DOUBLE,
  severity   STRING
) WITH ('connector' = 'print', 'print-identifier' = 'overspeed');

CREATE TEMPORARY VIEW overspeed AS
SELECT
  vehicle_id,
  driver_id,
  ts,
  speed_kmh,
  ROUND(speed_kmh - ${SPEED_LIMIT_KMH:-120}, 2) AS over_limit_kmh,
  CASE
    WHEN speed_kmh >= ${SPEED_LIMIT_KMH:-120} + 20 THEN 'severe'
    WHEN speed_kmh >= ${SPEED_LIMIT_KMH:-120} + 10 THEN 'major'
    ELSE 'minor'
  END AS severity,
  lat,
  lon
FROM telemetry
WHERE speed_kmh > ${SPEED_LIMIT_KMH:-120};

EXECUTE STATEMENT SET
BEGIN
  INSERT INTO overspeed_events SELECT * FROM overspeed;
  INSERT INTO console SELECT vehicle_id, ts, speed_kmh, severity FROM overspeed;
END;
