#!/usr/bin/env bash
# The long kill -9 soak (the test suite runs a short one): a fleet-sim job with TUMBLE, HOP,
# SESSION, MATCH_RECOGNIZE, a pass-through, a window Top-N over an aggregate per vehicle (two
# stages) and a fleet-wide TUMBLE (two phases) into file sinks, checkpointing every 500 ms, is
# killed with SIGKILL at random moments for MINUTES minutes and restarted each time at a random
# parallelism from 1 to 3 (so every restart may rescale its checkpoint), then run to its end.
# Every output must equal, row for row and count for count, an uninterrupted run of the job.
#   scripts/soak.sh [minutes] [rows]
# SLUICE_BIN picks the binary (default: a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
rows="${2:-2000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
bin="${SLUICE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin="$CARGO_TARGET_DIR/release/sluice"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_DATA_HOME="$work/data"

job() { # job NAME RATE [PARALLELISM]: the job's SQL, writing under $work/NAME
  local out="$work/$1"
  if [ -n "${3:-}" ]; then echo "SET 'parallelism.default' = '$3';"; fi
  cat <<SQL
SET 'execution.checkpointing.interval' = '500 ms';
CREATE TABLE telemetry (
  vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE, accel_ms2 DOUBLE, event_type STRING,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'fleet-sim', 'vehicles' = '200', 'seed' = '9', 'start-time' = '2024-03-01 08:00:00',
        'number-of-rows' = '$rows', 'rows-per-second' = '$2');
CREATE TABLE passthrough (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE) WITH ('connector' = 'filesystem', 'path' = '$out/passthrough', 'format' = 'csv');
CREATE TABLE tumble (vehicle_id STRING, ws TIMESTAMP(3), n BIGINT, top DOUBLE) WITH ('connector' = 'filesystem', 'path' = '$out/tumble', 'format' = 'csv');
CREATE TABLE hop (driver_id STRING, we TIMESTAMP(3), n BIGINT) WITH ('connector' = 'filesystem', 'path' = '$out/hop', 'format' = 'csv');
CREATE TABLE session (vehicle_id STRING, ws TIMESTAMP(3), we TIMESTAMP(3), n BIGINT) WITH ('connector' = 'filesystem', 'path' = '$out/session', 'format' = 'csv');
CREATE TABLE braking (vehicle_id STRING, first_ts TIMESTAMP(3), hard BIGINT) WITH ('connector' = 'filesystem', 'path' = '$out/braking', 'format' = 'csv');
CREATE TABLE fastest (ws TIMESTAMP(3), vehicle_id STRING, peak DOUBLE, rn BIGINT) WITH ('connector' = 'filesystem', 'path' = '$out/fastest', 'format' = 'csv');
CREATE TABLE fleet_minute (ws TIMESTAMP(3), readings BIGINT, peak DOUBLE) WITH ('connector' = 'filesystem', 'path' = '$out/fleet_minute', 'format' = 'csv');
INSERT INTO passthrough SELECT vehicle_id, ts, speed_kmh FROM telemetry WHERE speed_kmh > 20;
INSERT INTO tumble SELECT vehicle_id, window_start, COUNT(*), MAX(speed_kmh)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY vehicle_id, window_start, window_end;
INSERT INTO hop SELECT driver_id, window_end, COUNT(*)
  FROM TABLE(HOP(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)) GROUP BY driver_id, window_start, window_end;
INSERT INTO session SELECT vehicle_id, window_start, window_end, COUNT(*)
  FROM TABLE(SESSION(TABLE telemetry PARTITION BY vehicle_id, DESCRIPTOR(ts), INTERVAL '20' SECOND)) GROUP BY vehicle_id, window_start, window_end;
INSERT INTO braking SELECT * FROM telemetry MATCH_RECOGNIZE (
  PARTITION BY vehicle_id ORDER BY ts
  MEASURES FIRST(H.ts) AS first_ts, COUNT(H.ts) AS hard
  ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
  PATTERN (H+ N) DEFINE H AS H.accel_ms2 < -1.5, N AS N.accel_ms2 >= -1.5
) AS m;
INSERT INTO fastest SELECT window_start, vehicle_id, peak, rn FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY peak DESC, vehicle_id) AS rn
  FROM (SELECT vehicle_id, window_start, window_end, MAX(speed_kmh) AS peak
    FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY vehicle_id, window_start, window_end))
WHERE rn <= 3;
INSERT INTO fleet_minute SELECT window_start, COUNT(*), MAX(speed_kmh)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY window_start, window_end;
SQL
}

job reference 0 >"$work/reference.sql"
echo "reference run ($rows rows)..." >&2
"$bin" run --quiet "$work/reference.sql"

# Paced so the soak lasts about `minutes`.
rate=$(( rows / (minutes * 60) + 1 ))
deadline=$(( $(date +%s) + minutes * 60 ))
kills=0 restores=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  job soak "$rate" $(( RANDOM % 3 + 1 )) >"$work/soak.sql"
  "$bin" run --quiet "$work/soak.sql" 2>>"$work/soak.log" &
  pid=$!
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 1 + r / 32767 * 9 }')"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
done
job soak "$rate" >"$work/soak.sql"
"$bin" run --quiet "$work/soak.sql" 2>>"$work/soak.log"
restores=$(grep -c "restoring checkpoint" "$work/soak.log" || true)

status=0
for t in passthrough tumble hop session braking fastest fleet_minute; do
  want=$(cat "$work/reference/$t"/part-* | sort | uniq -c | sort -k2 | md5sum)
  got=$(cat "$work/soak/$t"/part-* | sort | uniq -c | sort -k2 | md5sum)
  n_want=$(cat "$work/reference/$t"/part-* | wc -l)
  n_got=$(cat "$work/soak/$t"/part-* | wc -l)
  if [ "$want" = "$got" ]; then verdict=equal; else verdict=DIFFERENT; status=1; fi
  printf '%-12s %10d rows (uninterrupted %10d)  %s\n' "$t" "$n_got" "$n_want" "$verdict"
done
echo "$kills kills with SIGKILL, $restores restores from a checkpoint, over $minutes min" >&2
exit $status
