-- Live map: the last known position of every vehicle (view fleet.last_positions).
-- Visualization: map, pin type, latitude = lat, longitude = lon.
SELECT vehicle_id, driver_id, lat, lon, speed_kmh, fuel_pct, last_event, last_seen, minutes_silent
FROM fleet.last_positions
ORDER BY vehicle_id
