-- Fleet utilization (docs/fleet.md): per vehicle and day (TUMBLE 1 day) the minutes it was on
-- (reported at all) and moving, into fleet.vehicle_utilization_daily (under-utilized vehicles:
-- view fleet.underutilized_vehicles); and every silence of DOWNTIME_MINUTES (default 10) or more
-- between two readings of a vehicle, into fleet.downtime — `parked` when the engine was switched
-- off before it, `signal_lost` when the vehicle went quiet while on. (Vehicles silent right now
-- are a query on the last positions: view fleet.silent_vehicles.)
--
--   sluice run pipelines/utilization.sql
--
-- Environment: KAFKA_BROKERS, TELEMETRY_TOPIC, CLICKHOUSE_URL / _USER / _PASSWORD / _DATABASE
-- (defaults: the local test servers, database fleet); SCAN_STARTUP_MODE=earliest-offset with
-- SCAN_BOUNDED_MODE=latest-offset replays a topic once and stops.

SET 'pipeline.name' = 'fleet-utilization';

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
  'properties.group.id' = 'sluice-utilization',
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

CREATE TABLE utilization_daily (
  day             TIMESTAMP(3),
  vehicle_id      STRING,
  active_minutes  BIGINT,
  moving_minutes  BIGINT,
  utilization_pct DOUBLE,
  ignitions       BIGINT,
  first_seen      TIMESTAMP(3),
  last_seen       TIMESTAMP(3)
) WITH (
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'vehicle_utilization_daily',
  'sink.flush-interval' = '30 s'
);

CREATE TABLE downtime_clickhouse (
  vehicle_id     STRING,
  silent_from    TIMESTAMP(3),
  silent_until   TIMESTAMP(3),
  silent_minutes INT,
  reason         STRING
) WITH (
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'downtime',
  'sink.flush-interval' = '5 s'
);

-- A reading that comes DOWNTIME_MINUTES or more after the vehicle's previous one ends a
-- silence. PREV reads the partition's previous row, so the condition is evaluated for whole
-- batches at once.
CREATE VIEW gaps AS
SELECT *
FROM telemetry
MATCH_RECOGNIZE (
  PARTITION BY vehicle_id
  ORDER BY ts
  MEASURES
    PREV(B.ts)         AS silent_from,
    B.ts               AS silent_until,
    PREV(B.event_type) AS last_event
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (B)
  DEFINE
    B AS B.ts >= PREV(B.ts) + INTERVAL '${DOWNTIME_MINUTES:-10}' MINUTE
);

EXECUTE STATEMENT SET BEGIN
  INSERT INTO utilization_daily
  SELECT
    window_start                                                            AS day,
    vehicle_id,
    COUNT(DISTINCT FLOOR(ts TO MINUTE))                                     AS active_minutes,
    COUNT(DISTINCT CASE WHEN speed_kmh >= 1 THEN FLOOR(ts TO MINUTE) END)   AS moving_minutes,
    ROUND(COUNT(DISTINCT FLOOR(ts TO MINUTE)) * 100.0 / 1440, 2)            AS utilization_pct,
    SUM(CASE WHEN event_type = 'ignition_on' THEN 1 ELSE 0 END)             AS ignitions,
    MIN(ts)                                                                 AS first_seen,
    MAX(ts)                                                                 AS last_seen
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' DAY))
  GROUP BY window_start, window_end, vehicle_id;

  INSERT INTO downtime_clickhouse
  SELECT
    vehicle_id,
    silent_from,
    silent_until,
    TIMESTAMPDIFF(MINUTE, silent_from, silent_until)                        AS silent_minutes,
    CASE WHEN last_event = 'ignition_off' THEN 'parked' ELSE 'signal_lost' END AS reason
  FROM gaps;
END;
