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
