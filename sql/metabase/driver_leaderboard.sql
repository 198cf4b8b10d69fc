-- Driver leaderboard: the last 7 days of daily scores, weighted by driving time (view
-- fleet.driver_leaderboard), best first. Visualization: table.
SELECT driver_id, score, driving_hours, harsh_braking, harsh_acceleration, overspeed_minutes
FROM fleet.driver_leaderboard
WHERE driving_hours > 0
ORDER BY score DESC, driving_hours DESC
LIMIT 50
