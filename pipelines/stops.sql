-- Delivery stops and dwell (docs/fleet.md): a stop is a vehicle standing (below 1 km/h) between
-- two moving readings — with the engine on (a delivery at the kerb) or off (parked, silent
-- until ignition_on). Stops of MIN_STOP_SECONDS (default 30) or more go to fleet.stops with
-- arrival, departure, dwell, position and door openings, and the delivery point they are at:
-- a lookup join with the geofence table (GEOFENCES_PATH, default data/geofences.jsonl: depots
-- and customers with a radius and the dwell they allow), so loading/unloading that took longer
-- than the point allows carries its delay (views fleet.delivery_stops, fleet.delivery_delays).
--
--   sluice run pipelines/stops.sql
--
-- Environment: KAFKA_BROKERS, TELEMETRY_TOPIC, GEOFENCES_PATH, CLICKHOUSE_URL / _USER /
-- _PASSWORD / _DATABASE (defaults: the local test servers, database fleet);
-- SCAN_STARTUP_MODE=earliest-offset with SCAN_BOUNDED_MODE=latest-offset replays a topic once
-- and stops.

SET 'pipeline.name' = 'fleet-stops';

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
  'properties.group.id' = 'sluice-stops',
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

CREATE TABLE stops_clickhouse (
  stop_id       STRING,
  vehicle_id    STRING,
  driver_id     STRING,
  arrived_at    TIMESTAMP(3),
  departed_at   TIMESTAMP(3),
  dwell_s       INT,
  lat           DOUBLE,
  lon           DOUBLE,
  engine_off    BOOLEAN,
  door_openings BIGINT,
  geofence_id   STRING,
  delivery_point STRING,
  delay_s       INT
) WITH (
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'stops',
  'sink.flush-interval' = '5 s'
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

CREATE VIEW stops AS
SELECT *
FROM telemetry
MATCH_RECOGNIZE (
  PARTITION BY vehicle_id
  ORDER BY ts
  MEASURES
    LAST(S.driver_id)                                           AS driver_id,
    FIRST(S.ts)                                                 AS arrived_at,
    D.ts                                                        AS departed_at,
    FIRST(S.lat)                                                AS lat,
    FIRST(S.lon)                                                AS lon,
    SUM(CASE WHEN S.event_type = 'ignition_off' THEN 1 ELSE 0 END) AS ignition_offs,
    SUM(CASE WHEN S.event_type = 'door_open' THEN 1 ELSE 0 END)    AS door_openings
  ONE ROW PER MATCH
  AFTER MATCH SKIP TO LAST D
  PATTERN (M S+ D)
  DEFINE
    M AS M.speed_kmh >= 1,
    S AS S.speed_kmh < 1,
    D AS D.speed_kmh >= 1
);

INSERT INTO stops_clickhouse
SELECT
  CONCAT(s.vehicle_id, '-stop-', CAST(CAST(s.arrived_at AS BIGINT) AS STRING)) AS stop_id,
  s.vehicle_id,
  s.driver_id,
  s.arrived_at,
  s.departed_at,
  TIMESTAMPDIFF(SECOND, s.arrived_at, s.departed_at) AS dwell_s,
  s.lat,
  s.lon,
  s.ignition_offs > 0 AS engine_off,
  s.door_openings,
  g.geofence_id,
  g.name AS delivery_point,
  CAST(GREATEST(TIMESTAMPDIFF(SECOND, s.arrived_at, s.departed_at) - g.max_dwell_s, 0) AS INT) AS delay_s
FROM stops AS s
LEFT JOIN geofences AS g
  ON g.kind IN ('depot', 'customer')
  AND HAVERSINE_KM(s.lat, s.lon, g.lat, g.lon) * 1000 <= g.radius_m
WHERE TIMESTAMPDIFF(SECOND, s.arrived_at, s.departed_at) >= ${MIN_STOP_SECONDS:-30};
