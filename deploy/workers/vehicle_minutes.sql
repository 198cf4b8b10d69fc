-- Per vehicle and minute: readings, top and mean speed, harsh brakes and the time spent over
-- SPEED_LIMIT_KMH (default 90), into ClickHouse fleet.vehicle_minutes; and per driver and 10
-- minutes into fleet.driver_ten_minutes. A job meant to run as several workers (docs/scaling.md,
-- "Many processes"): every process running this file takes a share of the topic's partitions.
-- The per-vehicle state needs no row to move (the topic is keyed by vehicle); the per-driver
-- rows move between workers through the job's repartition topic
-- (fleet-vehicle-minutes.driver_ten_minutes.repartition).
--
--   sluice run deploy/workers/vehicle_minutes.sql     # once per worker, on any machine
--
-- docker compose --profile workers up runs two of them; deploy/kubernetes/workers.yaml runs a
-- Deployment of them (kubectl scale changes how many).
--
-- Environment: KAFKA_BROKERS, TELEMETRY_TOPIC, CLICKHOUSE_URL / _USER / _PASSWORD / _DATABASE,
-- CHECKPOINT_DIR (a directory every worker reaches: s3://bucket/prefix across machines).

SET 'sluice.workers' = 'kafka-group';
SET 'pipeline.name' = 'fleet-vehicle-minutes';
SET 'execution.checkpointing.interval' = '10 s';
SET 'execution.checkpointing.dir' = '${CHECKPOINT_DIR:-/tmp/sluice-workers}';

CREATE TABLE telemetry (
  vehicle_id    STRING,
  driver_id     STRING,
  ts            TIMESTAMP(3),
  speed_kmh     DOUBLE,
  accel_ms2     DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = '${TELEMETRY_TOPIC:-fleet.telemetry.raw}',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:19092}',
  'properties.group.id' = 'sluice-vehicle-minutes',
  'scan.startup.mode' = 'earliest-offset',
  'scan.watermark.idle-timeout' = '30 s',
  'format' = 'json',
  'json.ignore-parse-errors' = 'true',
  -- The producer (sluice gen fleet) keys each reading by its vehicle: this is what lets the
  -- workers split the work by partition.
  'key.format' = 'raw',
  'key.fields' = 'vehicle_id'
);

CREATE TABLE vehicle_minutes (
  vehicle_id    STRING,
  minute        TIMESTAMP(3),
  readings      BIGINT,
  top_kmh       DOUBLE,
  mean_kmh      DOUBLE,
  harsh_brakes  BIGINT,
  speeding      BIGINT
) WITH (
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'vehicle_minutes'
);

CREATE TABLE driver_ten_minutes (
  driver_id     STRING,
  window_start  TIMESTAMP(3),
  readings      BIGINT,
  top_kmh       DOUBLE,
  harsh_brakes  BIGINT
) WITH (
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'driver_ten_minutes'
);

INSERT INTO driver_ten_minutes
SELECT driver_id, window_start, COUNT(*), MAX(speed_kmh), COUNT(*) FILTER (WHERE accel_ms2 < -3.5)
FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '10' MINUTE))
GROUP BY driver_id, window_start, window_end;

INSERT INTO vehicle_minutes
SELECT
  vehicle_id,
  window_start,
  COUNT(*),
  MAX(speed_kmh),
  ROUND(AVG(speed_kmh), 2),
  COUNT(*) FILTER (WHERE accel_ms2 < -3.5),
  COUNT(*) FILTER (WHERE speed_kmh > ${SPEED_LIMIT_KMH:-90})
FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY vehicle_id, window_start, window_end;
