#!/usr/bin/env bash
# Whole-process benchmark of the golden queries (windows, MATCH_RECOGNIZE, Q5; joins, OVER, Top-N,
# deduplication, updating aggregates, UNION ALL: q10–q16) on the 2M-event telemetry file:
# `sluice run` of each query with its sink swapped for a blackhole, measured by /usr/bin/time.
#   scripts/bench-windows.sh [runs-per-query]
# PROFILE=profiling uses that build instead of the release one.
# The input (2M events of 200 vehicles) is made with `sluice gen fleet` when missing (or set
# BENCH_INPUT). CHECKPOINT_INTERVAL (e.g. `1 s`) runs every query with checkpoints at that
# interval into a scratch directory, and prints the last run's final checkpoint. PARALLELISM
# (e.g. `1`, `2`) sets `parallelism.default` (default: the cores).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
input="${BENCH_INPUT:-$HOME/.cache/sluice/telemetry_2m.jsonl}"
profile="${PROFILE:-release}"
cargo build --profile "$profile" --quiet
bin="$CARGO_TARGET_DIR/$profile/sluice"
if [ ! -f "$input" ]; then
  "$bin" gen fleet --output "$input" --events 2000000 --rate 0 --vehicles 200 --start '2024-01-01 00:00:00'
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-20s %8s %8s %8s %10s %10s\n' query wall_s user_s sys_s peak_MB Mevents/s
queries="${QUERIES:-q1_tumble q2_hop q3_session q3_session_legacy q4_match q5_overspeed q10_interval_join q11_over_rows q12_dedup_last q13_window_topn q14_updating_agg q15_union_all q16_window_left_join q17_window_topn_30s q18_global_hop}"
for q in $queries; do
  perl -0pe "s/(CREATE TEMPORARY TABLE result \(.*?\)) WITH \(.*?\);/\$1 WITH ('connector' = 'blackhole');/s" \
    "tests/fixtures/$q.sql" >"$work/$q.body.sql"
  : >"$work/$q.sql"
  if [ -n "${PARALLELISM:-}" ]; then
    printf "SET 'parallelism.default' = '%s';\n" "$PARALLELISM" >>"$work/$q.sql"
  fi
  if [ -n "${CHECKPOINT_INTERVAL:-}" ]; then
    printf "SET 'execution.checkpointing.interval' = '%s';\nSET 'execution.checkpointing.dir' = '%s';\n" \
      "$CHECKPOINT_INTERVAL" "$work/checkpoints" >>"$work/$q.sql"
  fi
  cat "$work/$q.body.sql" >>"$work/$q.sql"
  for _ in $(seq 1 "$runs"); do
    rm -rf "$work/checkpoints"
    INPUT_PATH="$input" /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$bin" run --quiet "$work/$q.sql" 2>"$work/stderr"
    read -r wall user sys peak <"$work/time"
    awk -v q="$q" -v w="$wall" -v u="$user" -v s="$sys" -v p="$peak" \
      'BEGIN { printf "%-20s %8.2f %8.2f %8.2f %10.0f %10.2f\n", q, w, u, s, p / 1024, 2.0 / w }'
  done
  if [ -n "${CHECKPOINT_INTERVAL:-}" ]; then
    grep "^last " "$work/stderr" >&2 || true
  fi
done
