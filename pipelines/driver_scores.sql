-- Driver behaviour and scores (docs/fleet.md): per driver over rolling hours (HOP 1 h, every
-- 5 min, into fleet.driver_scores_5m) and per day (TUMBLE 1 day, into fleet.driver_scores_daily).
--
-- Each reading stands for one second of driving (the devices report at 1 Hz). A reading is
-- overspeed above SPEED_LIMIT_KMH (default 120), harsh braking below -4 m/s², harsh
-- acceleration above 2.5 m/s². The score starts at 100 and loses, per hour of driving (at least
-- 10 minutes counted, so a short drive is not judged on a few readings), 1 point per harsh-
-- braking reading, 0.2 per harsh-acceleration reading and 0.5 per minute over the limit; 0 is
-- the floor. The harsh-braking *episodes* are alerts (pipelines/alerts.sql).
--
--   sluice run pipelines/driver_scores.sql
--
-- Environment: KAFKA_BROKERS, TELEMETRY_TOPIC, CLICKHOUSE_URL / _USER / _PASSWORD / _DATABASE
-- (defaults: the local test servers, database fleet); SCAN_STARTUP_MODE=earliest-offset with
-- SCAN_BOUNDED_MODE=latest-offset replays a topic once and stops.

SET 'pipeline.name' = 'fleet-driver-scores';

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
  'properties.group.id' = 'sluice-driver-scores',
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

CREATE TABLE scores_5m (
  window_start           TIMESTAMP(3),
  window_end             TIMESTAMP(3),
  driver_id              STRING,
  readings               BIGINT,
  driving_s              BIGINT,
  avg_speed_kmh          DOUBLE,
  max_speed_kmh          DOUBLE,
  overspeed_s            BIGINT,
  harsh_braking_readings BIGINT,
  harsh_accel_readings   BIGINT,
  score                  DOUBLE
) WITH (
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'driver_scores_5m',
  'sink.flush-interval' = '5 s'
);

CREATE TABLE scores_daily (
  window_start           TIMESTAMP(3),
  window_end             TIMESTAMP(3),
  driver_id              STRING,
  readings               BIGINT,
  driving_s              BIGINT,
  avg_speed_kmh          DOUBLE,
  max_speed_kmh          DOUBLE,
  overspeed_s            BIGINT,
  harsh_braking_readings BIGINT,
  harsh_accel_readings   BIGINT,
  score                  DOUBLE
) WITH (
  'connector' = 'clickhouse',
  'url' = '${CLICKHOUSE_URL:-http://127.0.0.1:18123}',
  'username' = '${CLICKHOUSE_USER:-default}',
  'password' = '${CLICKHOUSE_PASSWORD:-}',
  'database' = '${CLICKHOUSE_DATABASE:-fleet}',
  'table' = 'driver_scores_daily',
  'sink.flush-interval' = '30 s'
);

CREATE VIEW driving AS
SELECT
  driver_id,
  ts,
  speed_kmh,
  CASE WHEN speed_kmh >= 1 THEN speed_kmh END                           AS moving_speed_kmh,
  CASE WHEN speed_kmh >= 1 THEN 1 ELSE 0 END                            AS moving,
  CASE WHEN speed_kmh > ${SPEED_LIMIT_KMH:-120} THEN 1 ELSE 0 END      AS overspeed,
  CASE WHEN accel_ms2 < -4 THEN 1 ELSE 0 END                            AS harsh_braking,
  CASE WHEN accel_ms2 > 2.5 THEN 1 ELSE 0 END                           AS harsh_accel
FROM telemetry;

EXECUTE STATEMENT SET BEGIN
  INSERT INTO scores_5m
  SELECT
    window_start,
    window_end,
    driver_id,
    COUNT(*)                                  AS readings,
    SUM(moving)                               AS driving_s,
    ROUND(AVG(moving_speed_kmh), 2)           AS avg_speed_kmh,
    MAX(speed_kmh)                            AS max_speed_kmh,
    SUM(overspeed)                            AS overspeed_s,
    SUM(harsh_braking)                        AS harsh_braking_readings,
    SUM(harsh_accel)                          AS harsh_accel_readings,
    ROUND(GREATEST(0.0, 100.0 - (SUM(harsh_braking) + 0.2 * SUM(harsh_accel)
                                 + SUM(overspeed) / 120.0) * 3600.0 / GREATEST(SUM(moving), 600)), 1)
                                              AS score
  FROM TABLE(HOP(TABLE driving, DESCRIPTOR(ts), INTERVAL '5' MINUTE, INTERVAL '1' HOUR))
  GROUP BY window_start, window_end, driver_id;

  INSERT INTO scores_daily
  SELECT
    window_start,
    window_end,
    driver_id,
    COUNT(*)                                  AS readings,
    SUM(moving)                               AS driving_s,
    ROUND(AVG(moving_speed_kmh), 2)           AS avg_speed_kmh,
    MAX(speed_kmh)                            AS max_speed_kmh,
    SUM(overspeed)                            AS overspeed_s,
    SUM(harsh_braking)                        AS harsh_braking_readings,
    SUM(harsh_accel)                          AS harsh_accel_readings,
    ROUND(GREATEST(0.0, 100.0 - (SUM(harsh_braking) + 0.2 * SUM(harsh_accel)
                                 + SUM(overspeed) / 120.0) * 3600.0 / GREATEST(SUM(moving), 600)), 1)
                                              AS score
  FROM TABLE(TUMBLE(TABLE driving, DESCRIPTOR(ts), INTERVAL '1' DAY))
  GROUP BY window_start, window_end, driver_id;
END;
