#!/usr/bin/env bash
# A ClickHouse server for tests on a machine without Docker: the engine of the chdb-core wheel
# serving HTTP on loopback, for the tests that need a real ClickHouse.
#   scripts/clickhouse-server.sh DATA_DIR PORT
# Runs in the foreground until killed; the data stays in DATA_DIR, so a restart on the same
# directory finds its tables again. SLUICE_CHDB_VENV names the venv holding chdb.
set -euo pipefail
dir="$1"
port="$2"
venv="${SLUICE_CHDB_VENV:-$HOME/.cache/sluice-ch/venv}"
mkdir -p "$dir/data"
cat >"$dir/config.xml" <<XML
<clickhouse>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$port</http_port>
    <path>$dir/data/</path>
</clickhouse>
XML
cd "$dir"
# The listener lives while this query runs; it reads config.xml from the current directory.
exec "$venv/bin/python" -c 'from chdb import _chdb; _chdb.query("SYSTEM START LISTEN HTTP; SELECT sleepEachRow(1) FROM numbers(1000000000) SETTINGS max_block_size = 1 FORMAT Null", "TabSeparated")'
