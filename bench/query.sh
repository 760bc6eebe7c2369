#!/usr/bin/env bash
# Query benchmark: typical flow-log questions over a lake of RECORDS generated records, timed
# against DuckDB on its own native table of the same rows, answers compared (bench/query.py).
#
#   bench/query.sh [RECORDS] [FILES]        (default 20000000 records in 1000 files)
#
# Needs python3 with duckdb. Data lives under $BENCH_DIR (default: a temporary folder, removed
# afterwards); an existing $BENCH_DIR/lake from bench/ingest.sh or an earlier run is reused.
set -euo pipefail
records=${1:-20000000}
files=${2:-1000}
here=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$work"
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
bin="$here/target/release/flowscope"
(cd "$here" && cargo build --release --quiet -p flowscope)

if [ ! -d "$work/lake/_flowscope" ]; then
  rm -rf "$work/src" "$work/query-duck.db"
  "$bin" generate --out "$work/src" --records "$records" --files "$files" --seed 7 > /dev/null
  "$bin" ingest "$work/src" --lake "$work/lake" --threads 2 --quiet
fi
python3 "$here/bench/query.py" "$bin" "$work/lake" "$work/query-duck.db" "${RUNS:-3}"
