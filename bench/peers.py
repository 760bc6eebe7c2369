#!/usr/bin/env python3
"""flowscope beside DuckDB and ClickHouse (chDB) on the same flow log files: ingest, and the
questions a flow-log user asks, cold and warm, answers compared.

    bench/peers.py --flowscope BIN --work DIR [--shape independent|realistic]
                   [--records N] [--files F] [--runs R] [--questions NAME,...]

Data shapes:
  independent  bench/make_flow_logs.py (no flowscope code): skewed clients, answered
               connections, internet scanners, NODATA; --big-files (a few large objects among
               many small) and a custom format mixed in (every seventh file).
  realistic    `flowscope generate --traffic realistic`: most files small, one in twenty large.

Engines, each with 2 threads:
  flowscope     `flowscope ingest` into its lake; `flowscope sql` / `insights` / `top` on it
  duckdb        the DuckDB CLI: CREATE TABLE AS read_csv(...) into a database file (native)
  duckdb-lake   the DuckDB CLI over flowscope's Parquet lake (read_parquet, hive partitions)
  chdb          ClickHouse in-process (chDB): INSERT into a MergeTree table from the gzip text
  chdb-lake     chDB over flowscope's Parquet lake (file(..., Parquet))

Cold: a new process per question for every engine (`flowscope sql`, the duckdb CLI on its
database file, a new Python process importing chdb), the OS page cache warm; the whole
process's wall time. Warm: one long-lived session each (flowscope: one `flowscope sql` process
running the statement R times; `flowscope shell` for Logs Insights; DuckDB: one CLI session with
.timer; chDB: one session), best of R. Every engine's answer is compared with DuckDB's native
one (floats to a relative 1e-9); the script exits 1 when any differs. Prints Markdown tables.
"""

import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))

# The columns every engine's native table has: the default format's, and the custom format's
# additions (NULL where a file's format lacks them).
COLUMNS = [
    ("version", "Int32"), ("account_id", "String"), ("interface_id", "String"),
    ("srcaddr", "String"), ("dstaddr", "String"), ("srcport", "Int32"), ("dstport", "Int32"),
    ("protocol", "Int32"), ("packets", "Int64"), ("bytes", "Int64"), ("start", "Int64"),
    ("end", "Int64"), ("action", "String"), ("log_status", "String"), ("vpc_id", "String"),
    ("subnet_id", "String"), ("flow_direction", "String"), ("tcp_flags", "Int32"),
]
DUCK_TYPES = {"Int32": "INTEGER", "Int64": "BIGINT", "String": "VARCHAR"}
DEFAULT_FIELDS = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol "
                  "packets bytes start end action log-status").split()
CUSTOM_FIELDS = ("version vpc-id subnet-id interface-id account-id srcaddr dstaddr srcport "
                 "dstport protocol packets bytes start end action log-status flow-direction "
                 "tcp-flags").split()
CUSTOM_FLOW_LOG = "fl-0c0ffee0000000001"


def run(cmd, **kw):
    began = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    took = time.perf_counter() - began
    if out.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({out.returncode}): {out.stderr[-2000:]}")
    return took, out


# ---------------------------------------------------------------------------------------------
# Data and ingest


def make_data(a, src):
    if os.path.exists(os.path.join(src, "summary.json")):
        return json.load(open(os.path.join(src, "summary.json")))
    shutil.rmtree(src, ignore_errors=True)
    if a.shape == "independent":
        _, out = run([sys.executable, os.path.join(HERE, "make_flow_logs.py"), "--out", src,
                      "--records", str(a.records), "--files", str(a.files), "--seed", "11",
                      "--big-files", str(max(1, a.files // 150)), "--custom-every", "7"])
        summary = json.loads(out.stdout)
    else:
        _, out = run([a.flowscope, "generate", "--out", src, "--records", str(a.records),
                      "--files", str(a.files), "--seed", "11", "--traffic", "realistic"])
        summary = json.loads(out.stdout)
    json.dump(summary, open(os.path.join(src, "summary.json"), "w"))
    return summary


def gz_files(src):
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".log.gz"):
                yield os.path.join(root, n)


def duck_select(fields):
    """DuckDB's SELECT list turning a header's fields into the native table's columns."""
    have = {f.replace("-", "_"): f for f in fields}
    return ", ".join(
        f'CAST("{have[c]}" AS {DUCK_TYPES[t]}) AS "{c}"' if c in have
        else f'CAST(NULL AS {DUCK_TYPES[t]}) AS "{c}"' for c, t in COLUMNS)


def ingest_flowscope(a, src, lake):
    shutil.rmtree(lake, ignore_errors=True)
    took, _ = run([a.flowscope, "ingest", src, "--lake", lake, "--threads", "2", "--quiet"])
    return took


def ingest_duckdb(src, db, custom):
    for f in (db, db + ".wal"):
        if os.path.exists(f):
            os.remove(f)
    # Each format's files listed by name: read_csv takes one header's columns for a whole glob.
    names = sorted(gz_files(src))
    groups = [(DEFAULT_FIELDS, [n for n in names if CUSTOM_FLOW_LOG not in n])]
    if custom:
        groups.append((CUSTOM_FIELDS, [n for n in names if CUSTOM_FLOW_LOG in n]))
    parts = []
    for fields, group in groups:
        listed = ", ".join(f"'{n}'" for n in group)
        parts.append(
            f"SELECT {duck_select(fields)} FROM read_csv([{listed}], delim=' ', header=true, "
            "nullstr='-', all_varchar=true)")
    sql = "CREATE TABLE flows AS " + " UNION ALL ".join(parts) + ";"
    took, _ = run(["duckdb", db, "-cmd", "SET threads = 2", "-c", sql])
    return took


def ch_select(fields):
    """chDB's SELECT list over a LineAsString line split on spaces."""
    pos = {f.replace("-", "_"): i + 1 for i, f in enumerate(fields)}
    out = []
    for c, t in COLUMNS:
        if c not in pos:
            out.append(f"NULL AS `{c}`")
        elif t == "String":
            out.append(f"nullIf(f[{pos[c]}], '-') AS `{c}`")
        else:
            out.append(f"to{t}OrNull(f[{pos[c]}]) AS `{c}`")
    return ", ".join(out)


CH_TABLE = ("CREATE TABLE flows (" + ", ".join(
    f"`{c}` {t}" if c in ("version", "account_id", "interface_id", "log_status")
    else f"`{c}` Nullable({t})" for c, t in COLUMNS) + ") ENGINE = MergeTree ORDER BY tuple()")


def chdb_script(body):
    return ("import sys, time\nfrom chdb import session\n"
            "s = session.Session(sys.argv[1])\n" + body)


def ingest_chdb(src, db, custom):
    shutil.rmtree(db, ignore_errors=True)
    inserts = []
    groups = [(DEFAULT_FIELDS, "NOT LIKE")] + ([(CUSTOM_FIELDS, "LIKE")] if custom else [])
    for fields, like in groups:
        inserts.append(
            f"INSERT INTO flows SELECT {ch_select(fields)} FROM (SELECT splitByChar(' ', line) "
            f"AS f FROM file('{src}/AWSLogs/**/*.log.gz', 'LineAsString') WHERE _file {like} "
            f"'%{CUSTOM_FLOW_LOG}%' AND NOT startsWith(line, 'version')) "
            "SETTINGS max_threads = 2")
    body = (f"s.query({CH_TABLE!r})\nbegan = time.perf_counter()\n"
            f"for q in {inserts!r}:\n    s.query(q)\n"
            "print(time.perf_counter() - began)\n")
    _, out = run([sys.executable, "-c", chdb_script(body), db])
    return float(out.stdout.split()[-1])


# ---------------------------------------------------------------------------------------------
# Questions


def questions(a, probe):
    """(name, SQL for every engine, flowscope's own command or None, answer post-processing)."""
    mid, day, src, eni, port = (probe["mid"], probe["day"], probe["src"], probe["eni"],
                                probe["port"])
    hour = f"start >= {mid} AND start < {mid + 3600}"

    def within(alias):
        return f"{alias}.start >= {mid} AND {alias}.start < {mid + 3600}"

    q = [
        ("count of records", "SELECT count(*) AS n FROM flows"),
        ("records by log-status",
         "SELECT log_status, count(*) AS n FROM flows GROUP BY log_status ORDER BY log_status"),
        ("top sources by bytes",
         "SELECT srcaddr, sum(bytes) AS b FROM flows WHERE srcaddr IS NOT NULL GROUP BY srcaddr "
         "ORDER BY b DESC, srcaddr LIMIT 10"),
        ("top destinations by packets",
         "SELECT dstaddr, sum(packets) AS p FROM flows WHERE dstaddr IS NOT NULL "
         "GROUP BY dstaddr ORDER BY p DESC, dstaddr LIMIT 10"),
        ("top pairs by bytes",
         "SELECT srcaddr, dstaddr, sum(bytes) AS b FROM flows WHERE srcaddr IS NOT NULL "
         "GROUP BY srcaddr, dstaddr ORDER BY b DESC, srcaddr, dstaddr LIMIT 10"),
        ("rejected destination ports",
         "SELECT dstport, count(*) AS n FROM flows WHERE action = 'REJECT' GROUP BY dstport "
         "ORDER BY n DESC, dstport LIMIT 10"),
        ("hourly totals",
         "SELECT start - start % 3600 AS hour_start, sum(bytes) AS b, sum(packets) AS p, "
         "count(*) AS n FROM flows GROUP BY 1 ORDER BY 1"),
        ("one hour in 5-minute bins",
         f"SELECT start - start % 300 AS t, sum(bytes) AS b, count(*) AS n FROM flows "
         f"WHERE {hour} GROUP BY 1 ORDER BY 1"),
        ("one day by action",
         f"SELECT action, count(*) AS n, sum(bytes) AS b FROM flows WHERE start >= {day} "
         f"AND start < {day + 86400} AND action IS NOT NULL GROUP BY action ORDER BY action"),
        ("scanners (distinct rejected ports)",
         "SELECT srcaddr, count(DISTINCT dstport) AS ports FROM flows WHERE action = 'REJECT' "
         "GROUP BY srcaddr HAVING count(DISTINCT dstport) >= 5 ORDER BY ports DESC, srcaddr "
         "LIMIT 20"),
        ("distinct sources", "SELECT count(DISTINCT srcaddr) AS n FROM flows"),
        ("distinct peers per interface",
         "SELECT interface_id, count(DISTINCT dstaddr) AS peers FROM flows GROUP BY interface_id "
         "ORDER BY peers DESC, interface_id LIMIT 10"),
        ("largest egress pairs",
         "SELECT srcaddr, dstaddr, sum(bytes) AS b FROM flows WHERE srcaddr LIKE '10.%' "
         "AND dstaddr NOT LIKE '10.%' GROUP BY srcaddr, dstaddr ORDER BY b DESC, srcaddr, "
         "dstaddr LIMIT 10"),
        ("per-interface action counts",
         "SELECT interface_id, action, count(*) AS n FROM flows WHERE action IS NOT NULL "
         "GROUP BY interface_id, action ORDER BY n DESC, interface_id, action LIMIT 20"),
        ("point lookup by address",
         f"SELECT count(*) AS n, sum(bytes) AS b FROM flows WHERE srcaddr = '{src}'"),
        ("point lookup by interface",
         f"SELECT count(*) AS n, sum(bytes) AS b FROM flows WHERE interface_id = '{eni}'"),
        ("SSH and RDP from outside",
         "SELECT srcaddr, dstport, action, count(*) AS n FROM flows WHERE dstport IN (22, 3389) "
         "AND srcaddr NOT LIKE '10.%' GROUP BY srcaddr, dstport, action "
         "ORDER BY n DESC, srcaddr, dstport, action LIMIT 20"),
        ("protocol mix",
         "SELECT protocol, count(*) AS n, sum(bytes) AS b FROM flows WHERE protocol IS NOT NULL "
         "GROUP BY protocol ORDER BY protocol"),
        ("bytes per account",
         "SELECT account_id, sum(bytes) AS b FROM flows GROUP BY account_id ORDER BY account_id"),
        ("largest single records",
         "SELECT interface_id, srcaddr, dstaddr, srcport, dstport, start, bytes FROM flows "
         "WHERE bytes IS NOT NULL ORDER BY bytes DESC, interface_id, srcaddr, dstaddr, srcport, "
         "dstport, start LIMIT 20"),
        ("bytes per packet by port",
         "SELECT dstport, CAST(sum(bytes) AS DOUBLE) / sum(packets) AS bpp FROM flows "
         "WHERE action = 'ACCEPT' AND dstport < 1024 GROUP BY dstport "
         "ORDER BY dstport LIMIT 20"),
        ("requests joined to replies (one hour, one port)",
         f"SELECT count(*) AS n, sum(r.bytes) AS reply_bytes FROM flows q JOIN flows r "
         f"ON q.srcaddr = r.dstaddr AND q.dstaddr = r.srcaddr AND q.srcport = r.dstport "
         f"AND q.dstport = r.srcport AND q.interface_id = r.interface_id "
         f"WHERE q.dstport = {port} AND {within('q')} AND {within('r')}"),
    ]
    out = [(name, sql, None, None) for name, sql in q]
    # flowscope's own languages, each beside the SQL a peer runs for it.
    out += [
        ("Insights: rejections by source",
         "SELECT srcaddr, count(*) AS numRejections FROM flows WHERE action = 'REJECT' "
         "GROUP BY srcaddr ORDER BY numRejections DESC, srcaddr LIMIT 20",
         ["insights", "filter action=\"REJECT\" | stats count(*) as numRejections by srcAddr "
          "| sort numRejections desc, srcAddr asc | limit 20"], None),
        ("Insights: bytes by hour",
         "SELECT start - start % 3600 AS t, sum(bytes) AS bytesTransferred FROM flows "
         "GROUP BY 1 ORDER BY 1",
         ["insights", "stats sum(bytes) as bytesTransferred by bin(1h) as t | sort t"], None),
        ("Insights: top talkers (one hour)",
         f"SELECT srcaddr, dstaddr, sum(bytes) AS b FROM flows WHERE {hour} "
         "AND srcaddr IS NOT NULL GROUP BY srcaddr, dstaddr ORDER BY b DESC, srcaddr, dstaddr "
         "LIMIT 10",
         ["insights", "filter ispresent(srcAddr) | stats sum(bytes) as b by srcAddr, dstAddr "
          "| sort b desc, srcAddr asc, dstAddr asc | limit 10",
          "--start", str(mid), "--end", str(mid + 3600)], None),
        ("top: sources by bytes",
         "SELECT srcaddr, sum(bytes) AS b FROM flows WHERE srcaddr IS NOT NULL GROUP BY srcaddr "
         "ORDER BY b DESC, srcaddr LIMIT 10",
         ["top", "--by", "srcaddr", "--rank-by", "bytes", "-n", "10"], ("srcaddr", "bytes")),
        ("top: rejected ports by records",
         "SELECT dstport, count(*) AS n FROM flows WHERE action = 'REJECT' GROUP BY dstport "
         "ORDER BY n DESC, dstport LIMIT 10",
         ["top", "--by", "dstport", "--rank-by", "records", "-n", "10", "--filter",
          "action = \"REJECT\""], ("dstport", "records")),
    ]
    if a.questions:
        wanted = a.questions.split(",")
        out = [x for x in out if any(w.lower() in x[0].lower() for w in wanted)]
    return out


# ---------------------------------------------------------------------------------------------
# Answers


def cell(v):
    if v is None or v in ("", "NULL", "\\N"):
        return None
    try:
        return float(v)
    except ValueError:
        pass
    # Insights' bin() prints a time; the peers print Unix seconds.
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?Z?", v)
    if m:
        return float(datetime.fromisoformat(f"{m[1]}T{m[2]}+00:00").timestamp())
    return v


def parse_csv(text, keep=None):
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    if keep:
        idx = [header.index(k) for k in keep]
        body = [[r[i] for i in idx] for r in body]
    return [[cell(v) for v in r] for r in body]


def same(x, y):
    if len(x) != len(y):
        return False
    for r, s in zip(x, y):
        if len(r) != len(s):
            return False
        for u, v in zip(r, s):
            if isinstance(u, float) and isinstance(v, float):
                if not math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif u != v:
                return False
    return True


# ---------------------------------------------------------------------------------------------
# Engines


class Flowscope:
    def __init__(self, binary, lake):
        self.binary, self.lake = binary, lake

    def command(self, sql, own):
        if own is None:
            return [self.binary, "sql", sql, "--lake", self.lake, "--format", "csv"]
        return [self.binary, *own, "--lake", self.lake, "--format", "csv"]

    def cold(self, sql, own, keep):
        took, out = run(self.command(sql, own))
        return took, parse_csv(out.stdout, keep)

    def warm(self, sql, own, runs):
        if own is not None and own[0] == "top":
            return None
        if own is None:
            text = ";\n".join([sql] * runs)
            _, out = run([self.binary, "sql", text, "--lake", self.lake, "--format", "csv",
                          "--timing"])
            times = [float(t) for t in re.findall(r"rows? in ([0-9.]+) s", out.stderr)]
            return min(times) if times else None
        # Logs Insights in one shell session, with its range, timed by the shell.
        script = "\\timing\n\\format csv\n"
        if "--start" in own:
            script += f"\\range {own[own.index('--start') + 1]} {own[own.index('--end') + 1]}\n"
        script += "".join(f"{own[1]}\n\n" for _ in range(runs))
        _, out = run([self.binary, "shell", "--lake", self.lake, "--no-history"], input=script)
        times = [float(t) for t in re.findall(r"rows? in ([0-9.]+) s", out.stderr + out.stdout)]
        return min(times) if times else None


class DuckCli:
    def __init__(self, db=None, lake=None):
        self.args = ["duckdb", "-readonly", db] if db else ["duckdb"]
        self.setup = ["-cmd", "SET threads = 2"]
        if lake:
            self.setup += ["-cmd", f"CREATE VIEW flows AS SELECT * FROM read_parquet("
                           f"'{lake}/date=*/hour=*/*.parquet', hive_partitioning = true)"]

    def cold(self, sql):
        took, out = run([*self.args, "-csv", *self.setup, "-c", sql])
        return took, parse_csv(out.stdout)

    def warm(self, sql, runs):
        _, out = run([*self.args, "-csv", *self.setup, "-cmd", ".timer on"],
                     input="".join(f"{sql};\n" for _ in range(runs)))
        times = [float(t) for t in re.findall(r"Run Time \(s\): real ([0-9.]+)", out.stdout)]
        return min(times)


class Chdb:
    def __init__(self, db=None, lake=None):
        self.db, self.lake = db, lake

    def text(self, sql):
        if self.lake:
            sql = re.sub(r"\bflows\b", f"file('{self.lake}/date=*/hour=*/*.parquet', Parquet)",
                         sql)
        return sql + " SETTINGS max_threads = 2"

    def cold(self, sql):
        body = f"sys.stdout.write(str(s.query({self.text(sql)!r}, 'CSVWithNames')))\n"
        took, out = run([sys.executable, "-c", chdb_script(body), self.db or ":memory:"])
        return took, parse_csv(out.stdout)

    def warm(self, sql, runs):
        body = (f"best = None\nfor _ in range({runs}):\n"
                "    began = time.perf_counter()\n"
                f"    str(s.query({self.text(sql)!r}, 'CSVWithNames'))\n"
                "    t = time.perf_counter() - began\n"
                "    best = t if best is None else min(best, t)\n"
                "print(best)\n")
        _, out = run([sys.executable, "-c", chdb_script(body), self.db or ":memory:"])
        return float(out.stdout.split()[-1])


# ---------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flowscope", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--shape", choices=["independent", "realistic"], default="independent")
    p.add_argument("--records", type=int, default=10_000_000)
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--ingest-runs", type=int, default=1)
    p.add_argument("--questions", default="")
    p.add_argument("--skip-ingest", action="store_true",
                   help="reuse the lake and the peers' tables from an earlier run")
    a = p.parse_args()
    a.flowscope = os.path.abspath(a.flowscope)
    work = os.path.abspath(os.path.join(a.work, a.shape))
    os.makedirs(work, exist_ok=True)
    src, lake = os.path.join(work, "src"), os.path.join(work, "lake")
    duck_db, ch_db = os.path.join(work, "duck.db"), os.path.join(work, "chdb")
    summary = make_data(a, src)
    custom = any(CUSTOM_FLOW_LOG in f for f in gz_files(src))
    files = sum(1 for _ in gz_files(src))
    gz_mb = sum(os.path.getsize(f) for f in gz_files(src)) / 1e6
    sizes = sorted(os.path.getsize(f) for f in gz_files(src))
    print(f"## Shape `{a.shape}`: {summary['records']:,} records in {files} gzip files "
          f"({gz_mb:,.0f} MB; median file {sizes[len(sizes) // 2] / 1e6:.2f} MB, largest "
          f"{sizes[-1] / 1e6:.1f} MB{'; a custom format mixed in' if custom else ''})\n")

    if not a.skip_ingest:
        loads = {"flowscope": [], "duckdb": [], "chdb": []}
        for _ in range(a.ingest_runs):
            loads["flowscope"].append(ingest_flowscope(a, src, lake))
            loads["duckdb"].append(ingest_duckdb(src, duck_db, custom))
            loads["chdb"].append(ingest_chdb(src, ch_db, custom))
        best = {k: min(v) for k, v in loads.items()}
        peer = min(best["duckdb"], best["chdb"])
        print("| ingest (2 threads) | seconds | ratio to the best peer |")
        print("|---|---:|---:|")
        for k, v in best.items():
            print(f"| {k} | {v:.2f} | {v / peer:.2f} |")
        print(f"\n(best of {a.ingest_runs}; flowscope's time is the whole `flowscope ingest` "
              "process, the lake committed and synced; DuckDB's the CLI process running the "
              "CREATE TABLE AS; chDB's the INSERTs timed inside its process)\n")

    duck = DuckCli(db=duck_db)
    # Check every engine holds every record before asking anything.
    _, rows = duck.cold("SELECT count(*) FROM flows")
    assert int(rows[0][0]) == summary["records"], (rows, summary)
    _, rows = duck.cold(
        "SELECT min(start), max(start) FROM flows")
    first, last = int(rows[0][0]), int(rows[0][1])
    mid = first + (last - first) // 2
    mid -= mid % 3600
    _, rows = duck.cold(
        "SELECT srcaddr FROM flows WHERE srcaddr IS NOT NULL GROUP BY srcaddr "
        "ORDER BY count(*) DESC, srcaddr LIMIT 1 OFFSET 100")
    probe = {"mid": mid, "day": first - first % 86400, "src": rows[0][0]}
    _, rows = duck.cold("SELECT interface_id FROM flows GROUP BY interface_id "
                        "ORDER BY count(*) DESC, interface_id LIMIT 1 OFFSET 10")
    probe["eni"] = rows[0][0]
    _, rows = duck.cold("SELECT dstport FROM flows WHERE dstport < 10000 AND action = 'ACCEPT' "
                        "GROUP BY dstport ORDER BY count(*) DESC, dstport LIMIT 1 OFFSET 2")
    probe["port"] = int(rows[0][0])

    engines = {
        "duckdb": duck,
        "duckdb-lake": DuckCli(lake=lake),
        "chdb": Chdb(db=ch_db),
        "chdb-lake": Chdb(lake=lake),
    }
    fs = Flowscope(a.flowscope, lake)
    failed = []
    table = []
    for name, sql, own, keep in questions(a, probe):
        times = {}
        answers = {}
        cold = {k: [] for k in ["flowscope", *engines]}
        for _ in range(a.runs):
            t, answers["flowscope"] = fs.cold(sql, own, keep)
            cold["flowscope"].append(t)
            for k, e in engines.items():
                t, answers[k] = e.cold(sql)
                cold[k].append(t)
        times["cold"] = {k: min(v) for k, v in cold.items()}
        times["warm"] = {"flowscope": fs.warm(sql, own, a.runs)}
        for k, e in engines.items():
            times["warm"][k] = e.warm(sql, a.runs)
        want = answers["duckdb"]
        bad = [k for k, v in answers.items() if not same(v, want)]
        if bad:
            failed.append(name)
            for k in bad:
                print(f"{name}: {k} differs from duckdb:\n  {k}: {answers[k][:4]}\n"
                      f"  duckdb: {want[:4]}", file=sys.stderr)
        table.append((name, times, len(want), bad))
        print(f"  {name}: done", file=sys.stderr, flush=True)

    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(table, f)
    for mode in ("cold", "warm"):
        print(f"### {mode.capitalize()} (seconds, best of {a.runs}; ratio = flowscope / the best "
              "peer)\n")
        print("| question | flowscope | DuckDB | DuckDB on the lake | chDB | chDB on the lake "
              "| ratio | rows | same answers |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        ratios = []
        for name, times, rows, bad in table:
            t = times[mode]
            # DuckDB's .timer prints milliseconds: a 0.000 is under half of one.
            peer = max(min(t[k] for k in engines), 0.0005)
            f = t["flowscope"]
            ratio = f / peer if f is not None else None
            if ratio is not None:
                ratios.append(ratio)
            cells = " | ".join(f"{t[k]:.3f}" for k in engines)
            print(f"| {name} | {'—' if f is None else f'{f:.3f}'} | {cells} | "
                  f"{'—' if ratio is None else f'{ratio:.2f}'} | {rows} | "
                  f"{'yes' if not bad else 'NO: ' + ', '.join(bad)} |")
        ratios.sort()
        if ratios:
            print(f"\nflowscope / best peer: median {ratios[len(ratios) // 2]:.2f}, worst "
                  f"{ratios[-1]:.2f}, best {ratios[0]:.2f}; at or under 1.0 on "
                  f"{sum(r <= 1.0 for r in ratios)} of {len(ratios)}\n")
    took, _ = run([sys.executable, "-c", "import chdb"])
    print(f"(a new Python process importing chdb takes {took:.2f} s of each cold chDB time; "
          f"machine: {os.cpu_count()} cores, {datetime.now(timezone.utc):%Y-%m-%d})\n")
    if failed:
        print(f"answers differ on: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
