-- ClickHouse schema of the fleet pipelines (database `fleet`). Apply with
--   clickhouse-client --multiquery < sql/schema.sql
-- Every table keeps a deduplication window so the Sluice sink's retried inserts are stored once.

CREATE DATABASE IF NOT EXISTS fleet;

-- Real-time alerts (pipelines/alerts.sql). alert_id is deterministic per event, so a
-- ReplacingMergeTree keyed by it collapses any repeat. Kept 90 days after arrival (not after
-- the event time: replayed history would expire on insert).
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
