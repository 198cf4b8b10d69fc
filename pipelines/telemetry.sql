-- Raw facts (docs/fleet.md): every telemetry reading into ClickHouse fleet.telemetry, for
-- drill-down and the live map of last positions (view fleet.last_positions in sql/schema.sql).
--
--   sluice run pipelines/telemetry.sql
--
-- Environment: KAFKA_BROKERS, TELEMETRY_TOPIC, CLICKHOUSE_URL / _USER / _PASSWORD / _DATABASE
-- (defaults: the local test servers, database fleet); SCAN_STARTUP_MODE=earliest-offset with
-- SCAN_BOUNDED_MODE=latest-offset replays a topic once and stops.

SET 'pipeline.name' = 'fleet-telemetry';

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
  'properties.group.id' = 'sluice-telemetry',
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

CREATE TABLE telemetry_clickhouse (
  vehicle_id    STRING,
  driver_id     STRING,
  ts            TIMESTAMP(3),
  lat           DOUBLE,
  lon           DOUBLE,
  speed_kmh     DOUBLE,
  accel_ms2     DOUBLE,
  engine_temp_c DOUBLE,
  fuel_pct      DOUBLE,
  event_type    STRING
) WITH (
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'telemetry',
  'sink.flush-interval' = '1 s'
);

INSERT INTO telemetry_clickhouse SELECT * FROM telemetry;
