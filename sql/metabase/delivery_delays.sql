-- Delivery delays: stops at depots and customers (data/geofences.jsonl) that took longer than
-- the point allows, longest delay first (view fleet.delivery_delays). Visualization: table.
SELECT delivery_point, vehicle_id, driver_id, arrived_at, dwell_s, delay_s, door_openings
FROM fleet.delivery_delays
ORDER BY delay_s DESC
LIMIT 100
