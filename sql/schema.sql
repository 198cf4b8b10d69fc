-- ClickHouse schema of the fleet pipelines (database `fleet`). Apply with
--   clickhouse-client --multiquery < sql/schema.sql
-- (docker-compose runs it as the server's init script). Every table keeps a deduplication window
-- so the Sluice sink's retried inserts are stored once. Tables whose rows can be emitted again
-- (a restarted job replaying, allowed lateness re-emitting a window) are ReplacingMergeTrees keyed
-- by what identifies the row: read them with FINAL, as the views below do.
-- TTLs run from `received_at` (arrival), not from event time: replayed history would otherwise
-- expire on insert.

CREATE DATABASE IF NOT EXISTS fleet;

-- Raw facts (pipelines/telemetry.sql): every reading, for drill-down and the live map.
CREATE TABLE IF NOT EXISTS fleet.telemetry
(
    vehicle_id    LowCardinality(String),
    driver_id     LowCardinality(String),
    ts            DateTime64(3),
    lat           Float64,
    lon           Float64,
    speed_kmh     Float64,
    accel_ms2     Float64,
    engine_temp_c Float64,
    fuel_pct      Float64,
    event_type    LowCardinality(String),
    received_at   DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (vehicle_id, ts, event_type)
TTL received_at + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Real-time alerts (pipelines/alerts.sql). alert_id is deterministic per event, so a
-- ReplacingMergeTree keyed by it collapses any repeat.
CREATE TABLE IF NOT EXISTS fleet.alerts
(
    alert_id   String,
    vehicle_id LowCardinality(String),
    driver_id  LowCardinality(String),
    alert_type LowCardinality(String),
    severity   LowCardinality(String),
    ts         DateTime64(3),
    lat        Float64,
    lon        Float64,
    detail     String,
    received_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (alert_type, vehicle_id, ts, alert_id)
TTL received_at + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Driver scores over rolling hours (HOP 1 h, every 5 min) and per day (pipelines/driver_scores.sql).
CREATE TABLE IF NOT EXISTS fleet.driver_scores_5m
(
    window_start           DateTime64(3),
    window_end             DateTime64(3),
    driver_id              LowCardinality(String),
    readings               UInt64,
    driving_s              UInt64,
    avg_speed_kmh          Nullable(Float64),
    max_speed_kmh          Float64,
    overspeed_s            UInt64,
    harsh_braking_readings UInt64,
    harsh_accel_readings   UInt64,
    score                  Float64,
    received_at            DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (window_end, driver_id)
TTL received_at + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS fleet.driver_scores_daily
(
    window_start           DateTime64(3),
    window_end             DateTime64(3),
    driver_id              LowCardinality(String),
    readings               UInt64,
    driving_s              UInt64,
    avg_speed_kmh          Nullable(Float64),
    max_speed_kmh          Float64,
    overspeed_s            UInt64,
    harsh_braking_readings UInt64,
    harsh_accel_readings   UInt64,
    score                  Float64,
    received_at            DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (window_start, driver_id)
TTL received_at + INTERVAL 2 YEAR
SETTINGS non_replicated_deduplication_window = 1000;

-- Trips: one row per SESSION window of a vehicle (pipelines/trips.sql).
CREATE TABLE IF NOT EXISTS fleet.trips
(
    trip_id       String,
    vehicle_id    LowCardinality(String),
    driver_id     LowCardinality(String),
    start_ts      DateTime64(3),
    end_ts        DateTime64(3),
    duration_s    Int32,
    distance_km   Float64,
    idle_s        UInt64,
    avg_speed_kmh Nullable(Float64),
    max_speed_kmh Float64,
    readings      UInt64,
    received_at   DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (vehicle_id, start_ts, trip_id)
TTL received_at + INTERVAL 1 YEAR
SETTINGS non_replicated_deduplication_window = 1000;

-- Stops: a vehicle standing between two moving readings (pipelines/stops.sql), with the depot or
-- customer it stood at (the pipeline's lookup join with data/geofences.jsonl) and the dwell
-- beyond what that point allows.
CREATE TABLE IF NOT EXISTS fleet.stops
(
    stop_id       String,
    vehicle_id    LowCardinality(String),
    driver_id     LowCardinality(String),
    arrived_at    DateTime64(3),
    departed_at   DateTime64(3),
    dwell_s       Int32,
    lat           Float64,
    lon           Float64,
    engine_off    UInt8,
    door_openings UInt64,
    geofence_id   LowCardinality(String),
    delivery_point String,
    delay_s       Int32,
    received_at   DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (vehicle_id, arrived_at, stop_id)
TTL received_at + INTERVAL 1 YEAR
SETTINGS non_replicated_deduplication_window = 1000;

-- Utilization per vehicle and day, and closed downtime intervals (pipelines/utilization.sql).
CREATE TABLE IF NOT EXISTS fleet.vehicle_utilization_daily
(
    day             DateTime64(3),
    vehicle_id      LowCardinality(String),
    active_minutes  UInt64,
    moving_minutes  UInt64,
    utilization_pct Float64,
    distance_km     Float64,
    ignitions       UInt64,
    first_seen      DateTime64(3),
    last_seen       DateTime64(3),
    received_at     DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (day, vehicle_id)
TTL received_at + INTERVAL 2 YEAR
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS fleet.downtime
(
    vehicle_id     LowCardinality(String),
    silent_from    DateTime64(3),
    silent_until   DateTime64(3),
    silent_minutes Int32,
    reason         LowCardinality(String),
    received_at    DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (vehicle_id, silent_from)
TTL received_at + INTERVAL 1 YEAR
SETTINGS non_replicated_deduplication_window = 1000;

-- Per vehicle and minute, from the workers of deploy/workers/vehicle_minutes.sql.
CREATE TABLE IF NOT EXISTS fleet.vehicle_minutes
(
    vehicle_id    LowCardinality(String),
    minute        DateTime64(3),
    readings      UInt64,
    top_kmh       Float64,
    mean_kmh      Float64,
    harsh_brakes  UInt64,
    speeding      UInt64,
    received_at   DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (vehicle_id, minute)
TTL received_at + INTERVAL 1 YEAR
SETTINGS non_replicated_deduplication_window = 1000;

-- Per driver and 10 minutes, from the same workers: rows regrouped by driver through the job's
-- repartition topic.
CREATE TABLE IF NOT EXISTS fleet.driver_ten_minutes
(
    driver_id     LowCardinality(String),
    window_start  DateTime64(3),
    readings      UInt64,
    top_kmh       Float64,
    harsh_brakes  UInt64,
    received_at   DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (driver_id, window_start)
TTL received_at + INTERVAL 1 YEAR
SETTINGS non_replicated_deduplication_window = 1000;

-- Views the dashboard reads (sql/metabase/*.sql). FINAL collapses re-emitted rows.

-- The last known position and state of every vehicle, and whether it has gone silent.
CREATE VIEW IF NOT EXISTS fleet.last_positions AS
SELECT
    vehicle_id,
    argMax(driver_id, ts)     AS driver_id,
    max(ts)                   AS last_seen,
    argMax(lat, ts)           AS lat,
    argMax(lon, ts)           AS lon,
    argMax(speed_kmh, ts)     AS speed_kmh,
    argMax(fuel_pct, ts)      AS fuel_pct,
    argMax(event_type, ts)    AS last_event,
    dateDiff('minute', max(ts), now64(3)) AS minutes_silent
FROM fleet.telemetry
GROUP BY vehicle_id;

-- Vehicles reporting nothing for 10 minutes without having switched the engine off: the live
-- downtime list (fleet.downtime holds the intervals that have ended).
CREATE VIEW IF NOT EXISTS fleet.silent_vehicles AS
SELECT vehicle_id, driver_id, last_seen, minutes_silent, lat, lon
FROM fleet.last_positions
WHERE minutes_silent >= 10 AND last_event != 'ignition_off';

-- Stops at a depot or customer (geofence_id empty: elsewhere).
CREATE VIEW IF NOT EXISTS fleet.delivery_stops AS
SELECT stop_id, vehicle_id, driver_id, arrived_at, departed_at, dwell_s, door_openings,
       geofence_id, delivery_point, delay_s
FROM fleet.stops FINAL
WHERE geofence_id != '';

-- Loading/unloading that took longer than the delivery point allows.
CREATE VIEW IF NOT EXISTS fleet.delivery_delays AS
SELECT * FROM fleet.delivery_stops WHERE delay_s > 0;

-- Vehicles that were on for less than two hours on a day they reported at all.
CREATE VIEW IF NOT EXISTS fleet.underutilized_vehicles AS
SELECT day, vehicle_id, active_minutes, utilization_pct, distance_km
FROM fleet.vehicle_utilization_daily FINAL
WHERE active_minutes < 120;

-- Driver leaderboard of the last 7 days of data (replayed history works too): the day scores
-- weighted by driving time.
CREATE VIEW IF NOT EXISTS fleet.driver_leaderboard AS
SELECT
    driver_id,
    round(sum(score * driving_s) / greatest(sum(driving_s), 1), 1) AS score,
    round(sum(driving_s) / 3600, 1)                               AS driving_hours,
    sum(harsh_braking_readings)                                   AS harsh_braking,
    sum(harsh_accel_readings)                                     AS harsh_acceleration,
    round(sum(overspeed_s) / 60, 1)                               AS overspeed_minutes
FROM fleet.driver_scores_daily FINAL
WHERE window_start >= (SELECT max(window_start) FROM fleet.driver_scores_daily) - INTERVAL 7 DAY
GROUP BY driver_id;
