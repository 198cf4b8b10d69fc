-- Alerts over time: alerts per type in 5-minute buckets over the last 24 hours of data.
-- Visualization: stacked bar, x = bucket, series = alert_type.
SELECT
    toStartOfInterval(ts, INTERVAL 5 MINUTE) AS bucket,
    alert_type,
    count() AS alerts
FROM fleet.alerts FINAL
WHERE ts >= (SELECT max(ts) FROM fleet.alerts) - INTERVAL 24 HOUR
GROUP BY bucket, alert_type
ORDER BY bucket, alert_type
