#!/usr/bin/env python3
"""Query benchmark: typical flow-log questions, flowscope (DataFusion over the lake) vs DuckDB on
its own native table of the same rows. Answers are compared; times are the best of RUNS runs in
one warm session for each engine (flowscope: one `flowscope sql` process per question running it
RUNS times with --timing; DuckDB: one connection, timed around execute+fetchall).

    python3 bench/query.py FLOWSCOPE_BINARY LAKE_DIR DUCKDB_FILE [RUNS]
"""
import csv
import io
import re
import subprocess
import sys
import time

import duckdb

binary, lake, duck_path = sys.argv[1:4]
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3

con = duckdb.connect(duck_path)
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
if not con.execute(
    "SELECT count(*) FROM information_schema.tables WHERE table_name = 'flows'"
).fetchone()[0]:
    began = time.time()
    con.execute(
        f"CREATE TABLE flows AS SELECT * FROM read_parquet('{lake}/date=*/hour=*/*.parquet', "
        "hive_partitioning = true)"
    )
    print(f"duckdb native table loaded in {time.time() - began:.1f} s", file=sys.stderr)

probe = con.execute(
    "SELECT srcaddr FROM flows WHERE srcaddr IS NOT NULL GROUP BY srcaddr "
    "ORDER BY count(*) DESC, srcaddr LIMIT 1 OFFSET 100"
).fetchone()[0]
first, last = con.execute("SELECT min(start), max(start) FROM flows").fetchone()
mid = first + (last - first) // 2

QUESTIONS = [
    ("top sources by bytes",
     "SELECT srcaddr, sum(bytes) AS b FROM flows GROUP BY srcaddr ORDER BY b DESC, srcaddr LIMIT 10"),
    ("rejected destination ports",
     "SELECT dstport, count(*) AS n FROM flows WHERE action = 'REJECT' GROUP BY dstport "
     "ORDER BY n DESC, dstport LIMIT 10"),
    ("hourly traffic",
     "SELECT start - start % 3600 AS hour_start, sum(bytes) AS b, sum(packets) AS p, count(*) AS n "
     "FROM flows GROUP BY 1 ORDER BY 1"),
    ("scanners (distinct rejected ports)",
     "SELECT srcaddr, count(DISTINCT dstport) AS ports FROM flows WHERE action = 'REJECT' "
     "GROUP BY srcaddr HAVING count(DISTINCT dstport) >= 5 ORDER BY ports DESC, srcaddr LIMIT 20"),
    ("largest egress pairs",
     "SELECT srcaddr, dstaddr, sum(bytes) AS b FROM flows WHERE srcaddr LIKE '10.%' "
     "AND dstaddr NOT LIKE '10.%' GROUP BY srcaddr, dstaddr ORDER BY b DESC, srcaddr, dstaddr LIMIT 10"),
    ("per-interface action counts",
     "SELECT interface_id, action, count(*) AS n FROM flows GROUP BY interface_id, action "
     "ORDER BY n DESC, interface_id, action LIMIT 20"),
    ("point lookup by address",
     f"SELECT count(*) AS n, sum(bytes) AS b FROM flows WHERE srcaddr = '{probe}'"),
    ("last hour of a time range",
     f"SELECT action, count(*) AS n, sum(bytes) AS b FROM flows WHERE start >= {mid} "
     f"AND start < {mid + 3600} GROUP BY action ORDER BY action"),
]


def norm(value):
    if value is None or value == "":
        return ""
    try:
        f = float(value)
        return str(int(f)) if f == int(f) else f"{f:.6g}"
    except (TypeError, ValueError):
        return str(value)


def flowscope(sql):
    text = ";\n".join([sql] * runs)
    out = subprocess.run(
        [binary, "sql", text, "--lake", lake, "--format", "csv", "--timing"],
        capture_output=True, text=True, check=True,
    )
    times = [float(t) for t in re.findall(r"rows in ([0-9.]+) s", out.stderr)]
    lines = out.stdout.splitlines()
    per = len(lines) // runs
    rows = list(csv.reader(io.StringIO("\n".join(lines[1:per]))))
    return times, [[norm(v) for v in r] for r in rows]


parquet = duckdb.connect()
parquet.execute("SET threads = 2")
parquet.execute(
    f"CREATE VIEW flows AS SELECT * FROM read_parquet('{lake}/date=*/hour=*/*.parquet', "
    "hive_partitioning = true)"
)


def duck(sql, connection=con):
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        rows = connection.execute(sql).fetchall()
        times.append(time.perf_counter() - began)
    return times, [[norm(v) for v in r] for r in rows]


total_rows = con.execute("SELECT count(*) FROM flows").fetchone()[0]
print(f"{total_rows:,} records; best of {runs} warm runs, seconds\n")
print("| question | flowscope (first) | flowscope | DuckDB native | DuckDB / flowscope | "
      "DuckDB on the lake's Parquet | same answer |")
print("|---|---:|---:|---:|---:|---:|---|")
failed = False
for name, sql in QUESTIONS:
    ft, fr = flowscope(sql)
    dt, dr = duck(sql)
    pt, pr = duck(sql, parquet)
    same = fr == dr == pr
    failed |= not same
    print(f"| {name} | {ft[0]:.3f} | {min(ft):.3f} | {min(dt):.3f} | {min(dt) / min(ft):.2f} | "
          f"{min(pt):.3f} | {'yes' if same else 'NO'} ({len(fr)} rows) |")
    if not same:
        print(f"  flowscope: {fr[:5]}\n  duckdb:    {dr[:5]}", file=sys.stderr)
sys.exit(1 if failed else 0)
