"""The lake read by other engines: DuckDB and Apache Spark see what flowscope wrote.

Usage: python3 tests/interop/lake_readers.py path/to/flowscope

Generates flow logs in AWS's S3 layout, ingests them, then checks that DuckDB (hive partitioning)
and Spark (partition discovery, and the DDL given in docs/lake.md) read the same rows, the same
sums, the AWS column names and types, and the date/hour partitions; and that both read the
emulator's S3 text layout as Athena reads it. Exits non-zero on any mismatch.
"""

import json
import os
import subprocess
import sys
import tempfile

FORMAT = ("${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} "
          "${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${vpc-id} "
          "${tcp-flags} ${flow-direction} ${traffic-path}")

passed = failed = 0


def check(name, got, want):
    global passed, failed
    if got == want:
        passed += 1
        print(f"ok   {name}: {got!r}")
    else:
        failed += 1
        print(f"FAIL {name}: got {got!r}, want {want!r}")


def fs_sql(flowscope, lake, query):
    """Rows of `flowscope sql` (JSON), as tuples in column order."""
    out = subprocess.run([flowscope, "sql", "--lake", lake, "--format", "json", query],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"flowscope sql failed on {query!r}: {out.stderr}")
    return [tuple(r.values()) for r in json.loads(out.stdout or "[]")]


def athena_samples(flowscope, work, con):
    """AWS's published Athena queries for VPC flow logs (SPEC.md §9), verbatim, over the lake;
    each answer equal to DuckDB's over the same files (the query in DuckDB's dialect)."""
    src_old, src_new, lake = (os.path.join(work, n) for n in ("athena-2020", "athena-now", "athena-lake"))
    # Two hours on the day the first sample asks for, and two hours two days ago (the third
    # sample asks for the last seven days).
    for out, start, seed in ((src_old, "2020-05-04T10:00:00Z", "7"), (src_new, "-2d", "8")):
        subprocess.run([flowscope, "generate", "--out", out, "--records", "20000", "--files", "24",
                        "--seed", seed, f"--start={start}", "--traffic", "realistic"],
                       check=True, capture_output=True)
        subprocess.run([flowscope, "ingest", out, "--lake", lake, "--quiet"], check=True)
    scan = f"read_parquet('{lake}/date=*/hour=*/*.parquet', hive_partitioning = true)"
    duck = lambda q: [tuple(r) for r in con.execute(q.replace("vpc_flow_logs", scan)).fetchall()]

    got = fs_sql(flowscope, lake, "SELECT * FROM vpc_flow_logs WHERE date = DATE('2020-05-04') LIMIT 100;")
    check("athena sample 1 (date = DATE('2020-05-04')): rows", len(got), 100)
    check("athena sample 1: rows on that date", len(got),
          min(100, duck("SELECT count(*) FROM vpc_flow_logs WHERE date = DATE '2020-05-04'")[0][0]))

    got = fs_sql(flowscope, lake, "SELECT day_of_week(date) AS day, date, interface_id, srcaddr, action, protocol\n"
                 "FROM vpc_flow_logs WHERE action = 'REJECT' AND protocol = 6 LIMIT 100;")
    every = duck("SELECT isodow(date) AS day, strftime(date, '%Y-%m-%d'), interface_id, srcaddr, action, protocol "
                 "FROM vpc_flow_logs WHERE action = 'REJECT' AND protocol = 6")
    check("athena sample 2 (day_of_week): rows", len(got), min(100, len(every)))
    check("athena sample 2: every row is one of DuckDB's (isodow)", all(r in set(every) for r in got), True)

    want = duck("SELECT SUM(packets) AS packetcount, dstaddr FROM vpc_flow_logs "
                "WHERE dstport = 443 AND date > current_date - INTERVAL 7 DAY "
                "GROUP BY dstaddr ORDER BY packetcount DESC, dstaddr LIMIT 10")
    got = fs_sql(flowscope, lake, "SELECT SUM(packets) AS packetcount, dstaddr FROM vpc_flow_logs\n"
                 "WHERE dstport = 443 AND date > current_date - interval '7' day\n"
                 "GROUP BY dstaddr ORDER BY packetcount DESC LIMIT 10;")
    check("athena sample 3 (interval '7' day): has rows", len(want) > 0, True)
    check("athena sample 3: packet counts", [r[0] for r in got], [int(r[0]) for r in want])

    addr = duck("SELECT srcaddr FROM vpc_flow_logs WHERE srcaddr LIKE '10.%' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")[0][0]
    got = fs_sql(flowscope, lake, "SELECT to_iso8601(from_unixtime(start)) AS start_time, "
                 "to_iso8601(from_unixtime(\"end\")) AS end_time, dstaddr, packets FROM vpc_flow_logs "
                 f"WHERE srcaddr = '{addr}' ORDER BY start_time, end_time, dstaddr, packets")
    want = duck("SELECT strftime(make_timestamp(start * 1000000), '%Y-%m-%dT%H:%M:%S.000Z'), "
                "strftime(make_timestamp(\"end\" * 1000000), '%Y-%m-%dT%H:%M:%S.000Z'), dstaddr, packets "
                f"FROM vpc_flow_logs WHERE srcaddr = '{addr}' ORDER BY 1, 2, 3, 4")
    check("athena sample (to_iso8601(from_unixtime(start))): rows", len(got), len(want))
    check("athena sample (to_iso8601(from_unixtime(start))): equal to DuckDB's", got == want, True)
    check("athena sample (to_iso8601): first row", got[:1], want[:1])

    for name, where in [
            ("split_part prefix", "split_part(srcaddr,'.', 1)='10' AND split_part(srcaddr,'.', 2) ='0'"),
            ("rejected TCP", "action = 'REJECT' AND protocol = 6"),
            ("dstaddr", f"dstaddr = '{addr}'"),
            ("projection day range", "date >= DATE('2020-05-04') AND date < DATE('2020-05-05')")]:
        q = f"SELECT count(*) AS n, sum(bytes) AS b FROM vpc_flow_logs WHERE {where}"
        want = duck(q.replace("DATE('2020-05-04')", "DATE '2020-05-04'").replace("DATE('2020-05-05')", "DATE '2020-05-05'"))
        got = fs_sql(flowscope, lake, q)
        check(f"athena sample ({name})", [(int(n), int(b or 0)) for n, b in got], [(int(n), int(b or 0)) for n, b in want])

    # Other Presto functions AWS's queries use.
    got = fs_sql(flowscope, lake, "SELECT date_format(from_unixtime(min(start) - min(start) % 3600), '%Y-%m-%d %H:%i:%s') AS t, "
                 "to_iso8601(min(date)) AS d, approx_distinct(srcaddr) > 0 AS a, "
                 "regexp_like(min(srcaddr), '^10\\.') AS r, "
                 "from_iso8601_timestamp('2020-05-04T10:00:00Z') = from_unixtime(1588586400) AS i, "
                 "approx_percentile(bytes, 0.5) > 0 AS p "
                 "FROM vpc_flow_logs WHERE date = DATE('2020-05-04')")
    check("presto date_format / to_iso8601 / approx_* / regexp_like / from_iso8601_timestamp", got,
          [("2020-05-04 10:00:00", "2020-05-04", True, True, True, True)])


def main():
    flowscope = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="flowscope-interop-")
    src, lake = os.path.join(work, "src"), os.path.join(work, "lake")
    totals = json.loads(subprocess.run(
        [flowscope, "generate", "--out", src, "--records", "60000", "--files", "30",
         "--format", FORMAT, "--seed", "42"],
        check=True, capture_output=True, text=True).stdout)
    subprocess.run([flowscope, "ingest", src, "--lake", lake, "--quiet"], check=True)
    info = json.loads(subprocess.run([flowscope, "lake", "info", "--lake", lake, "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    check("flowscope rows", info["rows"], totals["records"])
    partitions = info["partitions"]

    import duckdb
    con = duckdb.connect()
    scan = f"read_parquet('{lake}/date=*/hour=*/*.parquet', hive_partitioning = true)"
    rows, packets, nbytes, hours = con.execute(
        f"SELECT count(*), sum(packets), sum(bytes), count(DISTINCT (date, hour)) FROM {scan}").fetchone()
    check("duckdb rows", rows, totals["records"])
    check("duckdb sum(packets)", int(packets), totals["packets"])
    check("duckdb sum(bytes)", int(nbytes), totals["bytes"])
    check("duckdb partitions", hours, partitions)
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {scan})").fetchall())
    check("duckdb types", [types[c] for c in ["version", "srcport", "packets", "start", "srcaddr",
                                               "log_status", "tcp_flags", "traffic_path"]],
          ["INTEGER", "INTEGER", "BIGINT", "BIGINT", "VARCHAR", "VARCHAR", "INTEGER", "INTEGER"])
    # `-` in the text is NULL in the lake: traffic-path is only written for egress.
    check("duckdb ingress rows with a traffic_path", con.execute(
        f"SELECT count(*) FROM {scan} WHERE flow_direction = 'ingress' AND traffic_path IS NOT NULL").fetchone()[0], 0)
    check("duckdb egress rows without a traffic_path", con.execute(
        f"SELECT count(*) FROM {scan} WHERE flow_direction = 'egress' AND traffic_path IS NULL").fetchone()[0], 0)

    # The emulator's S3 layout read as Athena reads flow logs: space-delimited text, one header
    # line skipped, `-` as NULL.
    sim, sim_lake = os.path.join(work, "sim"), os.path.join(work, "sim-lake")
    subprocess.run([flowscope, "simulate", "--scenario", "three-tier", "--duration", "10m",
                    "--seed", "3", "--out", sim, "--quiet"], check=True)
    subprocess.run([flowscope, "ingest", sim, "--lake", sim_lake, "--quiet"], check=True)
    want = json.loads(subprocess.run(
        [flowscope, "sql", "SELECT count(*) AS n, sum(bytes) AS b FROM flows", "--lake", sim_lake,
         "--format", "json"], check=True, capture_output=True, text=True).stdout)[0]
    sim_glob = f"{sim}/AWSLogs/*/vpcflowlogs/*/*/*/*/*.log.gz"
    n, b = con.execute(f"SELECT count(*), sum(bytes) FROM read_csv('{sim_glob}', delim=' ', "
                       f"header=true, nullstr='-')").fetchone()
    check("duckdb reads simulate's S3 text files: rows", n, want["n"])
    check("duckdb reads simulate's S3 text files: sum(bytes)", int(b), want["b"])

    athena_samples(flowscope, work, con)

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # stay on loopback
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("local[2]").appName("flowscope-interop")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1").config("spark.sql.shuffle.partitions", "4")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(lake)
    agg = df.agg({"packets": "sum", "bytes": "sum", "*": "count"}).collect()[0]
    check("spark rows", agg["count(1)"], totals["records"])
    check("spark sum(packets)", agg["sum(packets)"], totals["packets"])
    check("spark sum(bytes)", agg["sum(bytes)"], totals["bytes"])
    fields = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    check("spark types", [fields[c] for c in ["srcport", "packets", "srcaddr", "date", "hour"]],
          ["int", "bigint", "string", "date", "int"])
    check("spark partitions", df.select("date", "hour").distinct().count(), partitions)
    # The DDL docs/lake.md gives for Spark SQL.
    spark.sql(f"CREATE TABLE vpc_flow_logs USING parquet LOCATION '{lake}'")
    spark.sql("MSCK REPAIR TABLE vpc_flow_logs")
    top = spark.sql("SELECT count(*) AS n FROM vpc_flow_logs WHERE action = 'ACCEPT' AND date >= DATE'2023-01-01'").collect()[0]["n"]
    accepted = con.execute(f"SELECT count(*) FROM {scan} WHERE action = 'ACCEPT'").fetchone()[0]
    check("spark SQL table = duckdb (accepted)", top, accepted)
    text = (spark.read.option("header", "true").option("sep", " ").option("nullValue", "-")
            .csv(sim_glob))
    check("spark reads simulate's S3 text files: rows", text.count(), want["n"])
    spark.stop()

    print(f"interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
