#!/usr/bin/env bash
# Several processes of one job ('sluice.workers' = 'kafka-group') on one machine, with a Kafka
# broker at BROKERS (default 127.0.0.1:19092, the test broker of scripts/test.sh):
#
# 1. Throughput: EVENTS fleet events (default 1,200,000, keyed by vehicle) in a 6-partition
#    topic, read to their end by 1 worker, then by 3 workers of a fresh job started together:
#    wall time until the last worker ends (joining the group included), summed CPU, events/s,
#    and the rows of the filtered output (the same for both, or the run is wrong). The job is a
#    per-vehicle TUMBLE aggregate into a blackhole and a filter into CSV files, checkpointed
#    every 2 s. KEY=driver_id groups the TUMBLE by driver instead: its rows then move between
#    the workers through the job's repartition topic (the cost of that hop, against the
#    default KEY=vehicle_id, the topic's key). KEY=none makes it fleet-wide: its local phase
#    runs on every worker, and partial states go through the topic to one partition.
# 2. Handover: 3 workers read a topic a generator keeps writing to (RATE events/s); one is
#    killed with SIGKILL, later another gets SIGTERM. Printed: the time from the kill (the
#    stop) until the partitions it ran run again in another worker — the pause those
#    partitions' output sees.
#
#   scripts/bench-workers.sh
#   KEY=driver_id HANDOVER=0 scripts/bench-workers.sh
# SLUICE_BIN picks the binary (default: the profiling build).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
brokers="${BROKERS:-127.0.0.1:19092}"
events="${EVENTS:-1200000}"
rate="${RATE:-20000}"
key="${KEY:-vehicle_id}"
bin="${SLUICE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --profile profiling --quiet --bin sluice
  bin="$CARGO_TARGET_DIR/profiling/sluice"
fi
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
run="$(date +%s)"
# The TUMBLE's key, as selected and as grouped by.
if [ "$key" = none ]; then
  select_key="'fleet'" group_key=""
else
  select_key="$key" group_key="$key, "
fi

job() { # name topic bounded
  local bounded=""
  [ "$3" = bounded ] && bounded=", 'scan.bounded.mode' = 'latest-offset'"
  cat <<SQL
SET 'sluice.workers' = 'kafka-group';
SET 'pipeline.name' = '$1';
SET 'execution.checkpointing.interval' = '2 s';
SET 'execution.checkpointing.dir' = '$work/checkpoints';
CREATE TABLE telemetry (vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'kafka', 'topic' = '$2', 'properties.bootstrap.servers' = '$brokers',
  'scan.startup.mode' = 'earliest-offset', 'format' = 'json', 'properties.fetch.wait.max.ms' = '10',
  'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'properties.session.timeout.ms' = '6000'$bounded);
CREATE TABLE fast (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE)
  WITH ('connector' = 'filesystem', 'path' = '$work/fast-$1', 'format' = 'csv');
CREATE TABLE minutes (k STRING, ws TIMESTAMP(3), n BIGINT, top DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO fast SELECT vehicle_id, ts, speed_kmh FROM telemetry WHERE speed_kmh > 90;
INSERT INTO minutes SELECT $select_key, window_start, COUNT(*), MAX(speed_kmh)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY ${group_key}window_start, window_end;
SQL
}

# Each line of a worker's stderr with the time it was printed (seconds since the epoch).
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done; }

declare -A worker_pid
start_worker() { # name sql
  RUST_LOG=warn "$bin" run --quiet "$2" 2> >(stamp >"$work/$1.log") &
  worker_pid[$1]=$!
  pids+=("$!")
}

echo "== throughput: $events events, 6 partitions"
throughput_topic="bench-workers-$run"
# On tansu, rows_out can fall short of the topic's true count: a bounded read stops at a high
# watermark counted in record batches, and a worker restored (at a rebalance) at an offset
# inside a batch is served the next batch. One record per batch avoids both, but then tansu
# serves the topic at ~20k records/s, and the bench would measure tansu.
"$bin" gen fleet --brokers "$brokers" --topic "$throughput_topic" --partitions 6 --events "$events" \
  --rate 0 --vehicles 600 --seed 3 --start '2024-03-01 08:00:00' 2>/dev/null
printf '%-8s %8s %8s %12s %10s\n' workers wall_s cpu_s events/s rows_out
for n in 1 3; do
  job "bench-$run-$n" "$throughput_topic" bounded >"$work/t$n.sql"
  start=$(date +%s.%N)
  list=()
  for i in $(seq 1 "$n"); do
    /usr/bin/time -f '%U %S' -o "$work/time$n-$i" "$bin" run --quiet "$work/t$n.sql" 2>"$work/t$n-$i.log" &
    list+=("$!")
  done
  for p in "${list[@]}"; do wait "$p"; done
  end=$(date +%s.%N)
  cpu=$(cat "$work"/time"$n"-* | awk '{ s += $1 + $2 } END { print s }')
  rows=$(cat "$work/fast-bench-$run-$n"/* | wc -l)
  awk -v n="$n" -v s="$start" -v e="$end" -v c="$cpu" -v ev="$events" -v r="$rows" \
    'BEGIN { printf "%-8s %8.2f %8.2f %12.0f %10d\n", n, e - s, c, ev / (e - s), r }'
done

# HANDOVER=0: the throughput only.
[ "${HANDOVER:-1}" = 1 ] || exit 0
echo "== handover: 3 workers, $rate events/s"
live_topic="bench-workers-live-$run"
"$bin" gen fleet --brokers "$brokers" --topic "$live_topic" --partitions 6 --rate "$rate" \
  --vehicles 600 --seed 4 2>/dev/null &
pids+=("$!")
sleep 2
job "bench-live-$run" "$live_topic" unbounded >"$work/live.sql"
for w in a b c; do start_worker "$w" "$work/live.sql"; done
sleep 15
owned() { grep "running partitions" "$1" | tail -1 | sed -E 's/.*running partitions ([0-9, ]+)[,( ].*/\1/' | tr -d ' ' | sed 's/,$//'; }
# The partitions of `victim`, then the first time another worker runs one of them.
handover() { # victim signal
  local victim=$1 signal=$2 parts pid at
  parts=$(owned "$work/$victim.log")
  at=$(date +%s.%N)
  kill "-$signal" "${worker_pid[$victim]}"
  for _ in $(seq 1 600); do
    for w in a b c; do
      [ "$w" = "$victim" ] && continue
      awk -v at="$at" -v parts="$parts" '
        $1 > at && /running partitions/ {
          n = split(parts, want, ","); line = $0; sub(/.*running partitions /, "", line)
          for (i = 1; i <= n; i++) if (index(", " line, ", " want[i] ",") || index(", " line, ", " want[i] " ")) {
            printf "%.2f\n", $1 - at; exit }
        }' "$work/$w.log"
    done | sort -n | head -1 >"$work/pause"
    [ -s "$work/pause" ] && break
    sleep 0.1
  done
  printf '%-8s partitions %-8s back in %s s\n' "$signal" "$parts" "$(cat "$work/pause")"
}
handover a KILL
sleep 15
handover b TERM
