#!/usr/bin/env bash
# Detection benchmark: `flowscope detect` (every built-in detection, a threat-intel list) and
# `flowscope diagnose` over a lake of RECORDS generated records, best of RUNS (default 3).
#
#   bench/detect.sh [RECORDS] [FILES]        (default 20000000 records in 1000 files)
#
# Data lives under $BENCH_DIR (default: a temporary folder, removed afterwards); an existing
# $BENCH_DIR/lake from bench/ingest.sh or bench/query.sh is reused.
set -euo pipefail
records=${1:-20000000}
files=${2:-1000}
runs=${RUNS:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$work"
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
bin="$here/target/release/flowscope"
(cd "$here" && cargo build --release --quiet -p flowscope)

if [ ! -d "$work/lake/_flowscope" ]; then
  rm -rf "$work/src"
  "$bin" generate --out "$work/src" --records "$records" --files "$files" --seed 7 > /dev/null
  "$bin" ingest "$work/src" --lake "$work/lake" --threads 2 --quiet
fi
n=$("$bin" sql --lake "$work/lake" "select count(*) from flows" --format csv | tail -1)
echo "lake: $n records"
best() { sort -n | head -1; }
for cmd in detect diagnose; do
  times=()
  for _ in $(seq "$runs"); do
    start=$(date +%s.%N)
    if [ "$cmd" = detect ]; then
      "$bin" detect --lake "$work/lake" --threat-intel "$here/testdata/threat-intel/example.txt" \
        --format json > "$work/out.jsonl"
    else
      "$bin" diagnose --lake "$work/lake" --format json > "$work/out.jsonl"
    fi
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc)")
  done
  printf '%-9s best of %s: %6.2f s   (%s lines of output)\n' "$cmd" "$runs" \
    "$(printf '%s\n' "${times[@]}" | best)" "$(wc -l < "$work/out.jsonl")"
done
echo "per step (last detect run):"
"$bin" detect --lake "$work/lake" --threat-intel "$here/testdata/threat-intel/example.txt" \
  --timing --format json 2>&1 > /dev/null | sed 's/^/  /'
