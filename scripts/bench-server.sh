#!/usr/bin/env bash
# Job server overhead: a server with JOBS small jobs running side by side (endless fleet-sim
# sources at RATE rows/s each, a TUMBLE window into a file, checkpoints every 10 s), then
# REQUESTS API calls (GET /v1/jobs and GET /v1/jobs/{id}, alternating) timed one by one:
# latency p50/p99, and the server's memory idle, then with the jobs running (per job).
#   scripts/bench-server.sh [jobs] [requests]
# SLUICE_BIN picks the binary (default: a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${1:-10}"
requests="${2:-1000}"
rate="${RATE:-100}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
bin="${SLUICE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin="$CARGO_TARGET_DIR/release/sluice"
fi
work=$(mktemp -d)
port=18391
export SLUICE_SERVER="http://127.0.0.1:$port"
"$bin" server --state-dir "$work/state" --listen "127.0.0.1:$port" 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "$SLUICE_SERVER/healthz" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ { print $2 / 1024 }' "/proc/$server/status"; }
idle=$(rss)

ids=()
for i in $(seq 1 "$jobs"); do
  cat >"$work/job$i.sql" <<SQL
CREATE TABLE t (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH ('connector' = 'fleet-sim', 'vehicles' = '50', 'seed' = '$i', 'rows-per-second' = '$rate');
CREATE TABLE o (vehicle_id STRING, ws TIMESTAMP(3), n BIGINT, top DOUBLE)
  WITH ('connector' = 'filesystem', 'path' = '$work/out$i', 'format' = 'csv');
INSERT INTO o SELECT vehicle_id, window_start, COUNT(*), MAX(speed_kmh)
  FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY vehicle_id, window_start, window_end;
SQL
  ids+=("$("$bin" submit "$work/job$i.sql" | tail -1)")
done
sleep 15 # let every job start and take a checkpoint

for i in $(seq 1 "$requests"); do
  if (( i % 2 )); then path=/v1/jobs; else path="/v1/jobs/${ids[$(( i % jobs ))]}"; fi
  curl -s -o /dev/null -w '%{time_total}\n' "$SLUICE_SERVER$path"
done | sort -n >"$work/latency"
loaded=$(rss)
running=$("$bin" jobs --json | python3 -c 'import json,sys; print(sum(j["status"] == "RUNNING" for j in json.load(sys.stdin)))')
awk -v n="$requests" -v jobs="$jobs" -v running="$running" -v idle="$idle" -v loaded="$loaded" '
  { t[NR] = $1 * 1000 }
  END {
    printf "%d jobs (%d running), %d requests: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
      jobs, running, n, t[int(n * 0.5)], t[int(n * 0.99)], t[n]
    printf "server RSS: %.0f MB idle, %.0f MB with the jobs (%.1f MB per job)\n",
      idle, loaded, (loaded - idle) / jobs
  }' "$work/latency"
