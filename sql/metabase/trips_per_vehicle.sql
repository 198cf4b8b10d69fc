-- Trips per vehicle over the last 7 days of data: count, distance, driving and idle time.
-- Visualization: bar (trips, km) or table.
SELECT
    vehicle_id,
    count()                              AS trips,
    round(sum(distance_km), 1)           AS km,
    round(sum(duration_s) / 3600, 1)     AS hours,
    round(sum(idle_s) / 60, 1)           AS idle_minutes,
    round(avg(avg_speed_kmh), 1)         AS avg_speed_kmh,
    max(max_speed_kmh)                   AS top_speed_kmh
FROM fleet.trips FINAL
WHERE start_ts >= (SELECT max(start_ts) FROM fleet.trips) - INTERVAL 7 DAY
GROUP BY vehicle_id
ORDER BY km DESC
