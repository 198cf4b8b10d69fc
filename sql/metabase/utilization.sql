-- Utilization: active and moving minutes per vehicle and day, least used first, with the
-- under-utilized flag of view fleet.underutilized_vehicles (< 120 active minutes).
-- Visualization: table, or bar of utilization_pct per vehicle.
SELECT
    toDate(day)                          AS day,
    vehicle_id,
    active_minutes,
    moving_minutes,
    utilization_pct,
    ignitions,
    active_minutes < 120                 AS underutilized
FROM fleet.vehicle_utilization_daily FINAL
WHERE day >= (SELECT max(day) FROM fleet.vehicle_utilization_daily) - INTERVAL 7 DAY
ORDER BY day DESC, utilization_pct
