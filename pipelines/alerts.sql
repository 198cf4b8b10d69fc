-- Real-time alerts (docs/fleet.md) from Kafka to the Kafka topic fleet.alerts and the
-- ClickHouse table fleet.alerts (schema in sql/schema.sql):
--   * SOS and crash events and engine over-temperature, passed through within milliseconds;
--   * overspeed: the first reading over SPEED_LIMIT_KMH (default 120) after one under it, so a
--     stretch of speeding is one alert, raised as it starts (MATCH_RECOGNIZE);
--   * harsh braking: fast (> 80 km/h), then one or more decelerations below -4 m/s² within
--     10 seconds (MATCH_RECOGNIZE);
--   * geofences: entering and leaving a restricted zone of the geofence table (GEOFENCES_PATH,
--     default data/geofences.jsonl), found by a lookup join, raised at the first reading inside
--     and the first reading outside again (MATCH_RECOGNIZE);
--   * idling: standing with the engine on (reporting, speed < 1 km/h) for IDLE_MINUTES
--     (default 5) after moving, raised once per stop when the threshold is reached. The
--     pattern starts only at the last moving row (S), so a long stop is one match attempt.
--
-- A new consumer group starts at the latest offset: alerts are about now, not a topic's history.
--
--   sluice run pipelines/alerts.sql
--
-- Environment: KAFKA_BROKERS, TELEMETRY_TOPIC, ALERTS_TOPIC, GEOFENCES_PATH, CLICKHOUSE_URL /
-- _USER / _PASSWORD / _DATABASE (defaults: the local test servers, database fleet);
-- SCAN_STARTUP_MODE=earliest-offset with SCAN_BOUNDED_MODE=latest-offset replays a topic once
-- and stops.

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
  'topic' = '${TELEMETRY_TOPIC:-fleet.telemetry.raw}',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:19092}',
  'properties.group.id' = 'sluice-alerts',
  'scan.startup.mode' = '${SCAN_STARTUP_MODE:-group-offsets}',
  'properties.auto.offset.reset' = 'latest',
  'scan.bounded.mode' = '${SCAN_BOUNDED_MODE:-unbounded}',
  'scan.watermark.idle-timeout' = '30 s',
  'format' = 'json',
  'json.ignore-parse-errors' = 'true',
  -- Keyed by vehicle (sluice gen fleet): with 'sluice.workers', per-vehicle state needs no
  -- repartition topic (docs/scaling.md).
  'key.format' = 'raw',
  'key.fields' = 'vehicle_id'
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
  'topic' = '${ALERTS_TOPIC:-fleet.alerts}',
  'properties.bootstrap.servers' = '${KAFKA_BROKERS:-127.0.0.1:19092}',
  'format' = 'json',
  'key.format' = 'raw',
  'key.fields' = 'vehicle_id'
);

CREATE TABLE alerts_clickhouse (
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
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'alerts',
  'sink.flush-interval' = '1 s'
);

CREATE TABLE geofences (
  geofence_id STRING,
  name        STRING,
  kind        STRING,
  lat         DOUBLE,
  lon         DOUBLE,
  radius_m    DOUBLE,
  max_dwell_s INT
) WITH (
  'connector' = 'filesystem',
  'path' = '${GEOFENCES_PATH:-data/geofences.jsonl}',
  'format' = 'json'
);

-- Every reading with the restricted zone it is in (NULL outside all of them).
CREATE VIEW zone_positions AS
SELECT t.vehicle_id, t.driver_id, t.ts, t.lat, t.lon, g.geofence_id, g.name AS zone
FROM telemetry AS t
LEFT JOIN geofences AS g
  ON g.kind = 'restricted' AND HAVERSINE_KM(t.lat, t.lon, g.lat, g.lon) * 1000 <= g.radius_m;

CREATE VIEW passthrough_alerts AS
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

CREATE VIEW overspeed_alerts AS
SELECT
  CONCAT(vehicle_id, '-overspeed-', CAST(CAST(ts AS BIGINT) AS STRING)) AS alert_id,
  vehicle_id,
  driver_id,
  'overspeed' AS alert_type,
  CASE WHEN speed_kmh >= ${SPEED_LIMIT_KMH:-120} + 20 THEN 'critical' ELSE 'warning' END AS severity,
  ts,
  lat,
  lon,
  CONCAT(CAST(speed_kmh AS STRING), ' km/h, limit ${SPEED_LIMIT_KMH:-120}') AS detail
FROM telemetry
MATCH_RECOGNIZE (
  PARTITION BY vehicle_id
  ORDER BY ts
  MEASURES
    O.driver_id AS driver_id,
    O.ts        AS ts,
    O.speed_kmh AS speed_kmh,
    O.lat       AS lat,
    O.lon       AS lon
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (N O)
  DEFINE
    N AS N.speed_kmh <= ${SPEED_LIMIT_KMH:-120},
    O AS O.speed_kmh > ${SPEED_LIMIT_KMH:-120}
);

-- Entering a zone (a reading outside, then one inside) and leaving it (inside, then outside).
-- Conditions that read only the current row keep the matching vectorized.
CREATE VIEW geofence_entries AS
SELECT
  CONCAT(vehicle_id, '-geofence_entry-', CAST(CAST(ts AS BIGINT) AS STRING)) AS alert_id,
  vehicle_id, driver_id, 'geofence_entry' AS alert_type, 'warning' AS severity, ts, lat, lon,
  CONCAT('entered ', zone) AS detail
FROM zone_positions
MATCH_RECOGNIZE (
  PARTITION BY vehicle_id
  ORDER BY ts
  MEASURES I.driver_id AS driver_id, I.ts AS ts, I.lat AS lat, I.lon AS lon, I.zone AS zone
  ONE ROW PER MATCH
  AFTER MATCH SKIP TO LAST I
  PATTERN (O I)
  DEFINE O AS O.geofence_id IS NULL, I AS I.geofence_id IS NOT NULL
);

CREATE VIEW geofence_exits AS
SELECT
  CONCAT(vehicle_id, '-geofence_exit-', CAST(CAST(ts AS BIGINT) AS STRING)) AS alert_id,
  vehicle_id, driver_id, 'geofence_exit' AS alert_type, 'info' AS severity, ts, lat, lon,
  CONCAT('left ', zone) AS detail
FROM zone_positions
MATCH_RECOGNIZE (
  PARTITION BY vehicle_id
  ORDER BY ts
  MEASURES O.driver_id AS driver_id, O.ts AS ts, O.lat AS lat, O.lon AS lon, I.zone AS zone
  ONE ROW PER MATCH
  AFTER MATCH SKIP TO LAST O
  PATTERN (I O)
  DEFINE I AS I.geofence_id IS NOT NULL, O AS O.geofence_id IS NULL
);

CREATE VIEW harsh_braking_alerts AS
SELECT
  CONCAT(vehicle_id, '-harsh_braking-', CAST(CAST(fast_ts AS BIGINT) AS STRING)) AS alert_id,
  vehicle_id,
  driver_id,
  'harsh_braking' AS alert_type,
  CASE WHEN min_accel_ms2 < -7 THEN 'critical' ELSE 'warning' END AS severity,
  first_brake_ts AS ts,
  lat,
  lon,
  CONCAT('from ', CAST(fast_speed_kmh AS STRING), ' km/h, ', CAST(brake_rows AS STRING),
         ' readings down to ', CAST(min_accel_ms2 AS STRING), ' m/s²') AS detail
FROM telemetry
MATCH_RECOGNIZE (
  PARTITION BY vehicle_id
  ORDER BY ts
  MEASURES
    LAST(A.driver_id)  AS driver_id,
    A.ts               AS fast_ts,
    A.speed_kmh        AS fast_speed_kmh,
    FIRST(B.ts)        AS first_brake_ts,
    FIRST(B.lat)       AS lat,
    FIRST(B.lon)       AS lon,
    MIN(B.accel_ms2)   AS min_accel_ms2,
    COUNT(B.accel_ms2) AS brake_rows
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (A B+ C) WITHIN INTERVAL '10' SECOND
  DEFINE
    A AS A.speed_kmh > 80,
    B AS B.accel_ms2 < -4,
    C AS NOT (C.accel_ms2 < -4)
);

CREATE VIEW idling_alerts AS
SELECT
  CONCAT(vehicle_id, '-idling-', CAST(CAST(idle_from AS BIGINT) AS STRING)) AS alert_id,
  vehicle_id,
  driver_id,
  'idling' AS alert_type,
  'info' AS severity,
  idle_until AS ts,
  lat,
  lon,
  CONCAT('idling since ', CAST(idle_from AS STRING)) AS detail
FROM telemetry
MATCH_RECOGNIZE (
  PARTITION BY vehicle_id
  ORDER BY ts
  MEASURES
    LAST(I.driver_id)  AS driver_id,
    FIRST(I.ts)        AS idle_from,
    L.ts               AS idle_until,
    L.lat              AS lat,
    L.lon              AS lon
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (S I+? L)
  DEFINE
    S AS S.speed_kmh >= 1,
    I AS I.speed_kmh < 1 AND I.event_type = 'telemetry',
    L AS L.speed_kmh < 1 AND L.event_type = 'telemetry'
         AND L.ts >= FIRST(I.ts) + INTERVAL '${IDLE_MINUTES:-5}' MINUTE
);

EXECUTE STATEMENT SET BEGIN
  INSERT INTO fleet_alerts SELECT * FROM passthrough_alerts;
  INSERT INTO fleet_alerts SELECT * FROM overspeed_alerts;
  INSERT INTO fleet_alerts SELECT * FROM geofence_entries;
  INSERT INTO fleet_alerts SELECT * FROM geofence_exits;
  INSERT INTO fleet_alerts SELECT * FROM harsh_braking_alerts;
  INSERT INTO fleet_alerts SELECT * FROM idling_alerts;
  INSERT INTO alerts_clickhouse SELECT * FROM passthrough_alerts;
  INSERT INTO alerts_clickhouse SELECT * FROM overspeed_alerts;
  INSERT INTO alerts_clickhouse SELECT * FROM geofence_entries;
  INSERT INTO alerts_clickhouse SELECT * FROM geofence_exits;
  INSERT INTO alerts_clickhouse SELECT * FROM harsh_braking_alerts;
  INSERT INTO alerts_clickhouse SELECT * FROM idling_alerts;
END;
