#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   1. installs what the tests need unless present: tansu (a Kafka-compatible broker, from
#      crates.io), ClickHouse (the chdb-core wheel from PyPI, in a venv), an S3-compatible
#      server for checkpoint storage (moto, from PyPI, in a venv) and, for the web console's and
#      the shell's tests, chromium with chromedriver and tmux (Debian packages, when root),
#   2. starts them on loopback unless something already listens on the test ports,
#   3. runs every test (cargo nextest when installed, else cargo test),
#   4. stops what it started.
# Under CI=true the Kafka and ClickHouse tests fail, rather than skip, when a server is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
TANSU_VERSION=0.6.0
KAFKA_ADDR=127.0.0.1:19092
CLICKHOUSE_ADDR=127.0.0.1:18123
CHDB_VERSION=26.9.0
CHDB_VENV="${SLUICE_CHDB_VENV:-$HOME/.cache/sluice-ch/venv}"
S3_ADDR=127.0.0.1:15000
MOTO_VERSION=5.2.5
MOTO_VENV="${SLUICE_MOTO_VENV:-$HOME/.cache/sluice-moto/venv}"
STATE_DIR="${SLUICE_TEST_STATE:-$HOME/.cache/sluice/test-services}"
mkdir -p "$STATE_DIR"

log() { printf '[test.sh] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

# wait_for NAME ADDR LOG: up to 30 s for a server just started to listen; its log if it does not.
wait_for() {
  for _ in $(seq 1 150); do
    port_open "$2" && return 0
    sleep 0.2
  done
  log "$1 did not start:"
  cat "$3" >&2
  exit 1
}

# --- tansu ---------------------------------------------------------------------------------
if ! command -v tansu >/dev/null 2>&1; then
  log "installing tansu $TANSU_VERSION (first run on this machine: ~10 minutes)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore
fi

started_pids=()
cleanup() {
  for pid in "${started_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

if port_open "$KAFKA_ADDR"; then
  log "a broker already listens on $KAFKA_ADDR; using it"
else
  log "starting tansu on $KAFKA_ADDR"
  tansu broker \
    --listener-url "tcp://$KAFKA_ADDR" \
    --advertised-listener-url "tcp://$KAFKA_ADDR" \
    --storage-engine memory://tansu/ >"$STATE_DIR/tansu.log" 2>&1 &
  started_pids+=($!)
  wait_for tansu "$KAFKA_ADDR" "$STATE_DIR/tansu.log"
fi
export SLUICE_TEST_KAFKA="$KAFKA_ADDR"

# --- ClickHouse (chdb-core serving HTTP) -----------------------------------------------------
if ! "$CHDB_VENV/bin/python" -c 'import chdb' >/dev/null 2>&1; then
  log "installing chdb-core $CHDB_VERSION into $CHDB_VENV"
  python3 -m venv "$CHDB_VENV"
  "$CHDB_VENV/bin/pip" install --quiet "chdb-core==$CHDB_VERSION"
fi
# Tests that stop and restart a server of their own start it with this.
export SLUICE_TEST_CHDB_SERVER="$PWD/scripts/clickhouse-server.sh"
export SLUICE_CHDB_VENV="$CHDB_VENV"
if port_open "$CLICKHOUSE_ADDR"; then
  log "ClickHouse already listens on $CLICKHOUSE_ADDR; using it"
else
  log "starting ClickHouse (chdb) on $CLICKHOUSE_ADDR"
  rm -rf "$STATE_DIR/clickhouse"
  scripts/clickhouse-server.sh "$STATE_DIR/clickhouse" "${CLICKHOUSE_ADDR#*:}" >"$STATE_DIR/clickhouse.log" 2>&1 &
  started_pids+=($!)
  wait_for ClickHouse "$CLICKHOUSE_ADDR" "$STATE_DIR/clickhouse.log"
fi
export SLUICE_TEST_CLICKHOUSE="http://$CLICKHOUSE_ADDR"

# --- S3 (moto's server) ----------------------------------------------------------------------
if ! "$MOTO_VENV/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
  log "installing moto $MOTO_VERSION into $MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet "moto[server]==$MOTO_VERSION"
fi
if port_open "$S3_ADDR"; then
  log "an S3 server already listens on $S3_ADDR; using it"
else
  log "starting moto (S3) on $S3_ADDR"
  "$MOTO_VENV/bin/moto_server" -H "${S3_ADDR%:*}" -p "${S3_ADDR#*:}" >"$STATE_DIR/moto.log" 2>&1 &
  started_pids+=($!)
  wait_for moto "$S3_ADDR" "$STATE_DIR/moto.log"
fi
export SLUICE_TEST_S3="http://$S3_ADDR"

# --- chromium, chromedriver and tmux (the console's browser test, the shell's terminal test) ---
missing=()
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium chromium-driver)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]} (Debian packages)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "missing ${missing[*]}: the console and shell tests need them"
  fi
fi

# --- tests -----------------------------------------------------------------------------------
# Jobs checkpoint by default under $XDG_DATA_HOME; tests must never restore a previous run's.
XDG_DATA_HOME="$(mktemp -d)"
export XDG_DATA_HOME

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
