-- Delivery stops and dwell (FLEET.md §3): a stop is a vehicle standing (below 1 km/h) between
-- two moving readings — with the engine on (a delivery at the kerb) or off (parked, silent
-- until ignition_on). Stops of MIN_STOP_SECONDS (default 30) or more go to fleet.stops with
-- arrival, departure, dwell, position and door openings. ClickHouse matches them to the depots
-- and customers of fleet.geofences when read (views fleet.delivery_stops and
-- fleet.delivery_delays: loading/unloading over the dwell a point allows).
--
--   sluice run pipelines/stops.sql
--
-- Environment: KAFKA_BROKERS, TELEMETRY_TOPIC, CLICKHOUSE_URL / _USER / _PASSWORD / _DATABASE
-- (defaults: the local test servers, database fleet); SCAN_STARTUP_MODE=earliest-offset with
-- SCAN_BOUNDED_MODE=latest-offset replays a topic once and stops.

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
  'json.ignore-parse-errors' = 'true'
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
  door_openings BIGINT
) WITH (
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'stops',
  'sink.flush-interval' = '5 s'
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
  CONCAT(vehicle_id, '-stop-', CAST(CAST(arrived_at AS BIGINT) AS STRING)) AS stop_id,
  vehicle_id,
  driver_id,
  arrived_at,
  departed_at,
  TIMESTAMPDIFF(SECOND, arrived_at, departed_at) AS dwell_s,
  lat,
  lon,
  ignition_offs > 0 AS engine_off,
  door_openings
FROM stops
WHERE TIMESTAMPDIFF(SECOND, arrived_at, departed_at) >= ${MIN_STOP_SECONDS:-30};
