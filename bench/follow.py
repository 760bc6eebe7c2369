#!/usr/bin/env python3
"""Always-on collection: `flowscope serve` catching up on a bucket, and following it.

    bench/follow.py FLOWSCOPE [--records N] [--files F] [--work DIR] [--live K]

Makes N records in F gzip objects with bench/make_flow_logs.py (default 20 M in 600), starts
moto's S3/SQS server on loopback, uploads them, and measures, on the same machine:

1. `flowscope ingest` of the same files from local disk into a fresh lake (2 threads);
2. a plain boto3 download of every object from moto (2 threads, bodies read and dropped): what
   moto itself can serve;
3. `flowscope serve --follow s3://bucket/` on a fresh lake: from start to every record
   committed (polled on /metrics), the lake checked against the data maker's totals through
   /api/sql (count and sum of bytes), and the server's peak memory (VmHWM);
4. steady following: K more objects uploaded one by one to a second bucket whose
   s3:ObjectCreated events go to an SQS queue the server waits on; for each, the seconds from
   the upload's answer to its records being visible through /api/sql.

Prints the figures and a one-line JSON of them. Needs python3 with moto[server] and boto3.
"""

import argparse
import concurrent.futures
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer")


def sql(base, query):
    req = urllib.request.Request(f"{base}/api/sql", data=json.dumps({"sql": query}).encode(),
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=120))["rows"]


def records_in(base):
    text = urllib.request.urlopen(f"{base}/metrics", timeout=30).read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("flowscope_records_total{"))


def peak_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("flowscope")
    p.add_argument("--records", type=int, default=20_000_000)
    p.add_argument("--files", type=int, default=600)
    p.add_argument("--work")
    p.add_argument("--live", type=int, default=10)
    p.add_argument("--serve-arg", action="append", default=[],
                   help="more arguments for serve (repeat), e.g. --serve-arg=--detect-interval=off")
    a = p.parse_args()
    import boto3
    from botocore.config import Config

    work = a.work or tempfile.mkdtemp(prefix="flowscope-follow-")
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, "src")
    summary_file = os.path.join(work, "summary.json")
    if not os.path.exists(summary_file):
        shutil.rmtree(src, ignore_errors=True)
        out = subprocess.run([sys.executable, os.path.join(HERE, "make_flow_logs.py"), "--out",
                              src, "--records", str(a.records), "--files", str(a.files)],
                             check=True, capture_output=True, text=True).stdout
        open(summary_file, "w").write(out)
    truth = json.load(open(summary_file))
    keys = []
    for root, _, names in os.walk(src):
        for n in names:
            keys.append(os.path.relpath(os.path.join(root, n), src))
    keys.sort()
    print(f"data: {truth['records']:,} records in {len(keys)} objects, "
          f"{truth['gzip_bytes'] / 1e6:.0f} MB gzip", flush=True)

    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1")
    moto_port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    servers = [moto]
    try:
        endpoint = f"http://127.0.0.1:{moto_port}"
        wait_http(endpoint)
        cfg = Config(max_pool_connections=8, retries={"max_attempts": 5})
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing", config=cfg)
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="flows")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda k: s3.upload_file(os.path.join(src, k), "flows", k), keys))
        print(f"uploaded to moto at {endpoint}", flush=True)

        # 1. Local ingest.
        lake1 = os.path.join(work, "lake-local")
        shutil.rmtree(lake1, ignore_errors=True)
        began = time.time()
        subprocess.run([a.flowscope, "ingest", src, "--lake", lake1, "--threads", "2",
                        "--quiet"], check=True)
        local = time.time() - began
        print(f"local ingest: {local:.1f} s", flush=True)

        # 2. Plain download.
        def fetch(k):
            return len(s3.get_object(Bucket="flows", Key=k)["Body"].read())
        began = time.time()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            fetched = sum(pool.map(fetch, keys))
        download = time.time() - began
        print(f"boto3 download: {download:.1f} s ({fetched / 1e6:.0f} MB)", flush=True)

        # 3. Catch-up through serve, and 4. steady following through SQS.
        s3.create_bucket(Bucket="live")
        queue = sqs.create_queue(QueueName="live-events",
                                 Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(Bucket="live", NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
        sources = os.path.join(work, "sources.toml")
        open(sources, "w").write(
            f'[[s3]]\nurl = "s3://flows/"\nendpoint_url = "{endpoint}"\ninterval = "2s"\n\n'
            f'[[s3]]\nurl = "s3://live/"\nendpoint_url = "{endpoint}"\n'
            f'sqs_queue_url = "{queue}"\n')
        lake2 = os.path.join(work, "lake-served")
        shutil.rmtree(lake2, ignore_errors=True)
        began = time.time()
        log = open(os.path.join(work, "serve.log"), "w")
        serve = subprocess.Popen([a.flowscope, "serve", "--lake", lake2, "--listen",
                                  "127.0.0.1:0", "--sources", sources, "--no-notify",
                                  "--flush-interval", "1", *a.serve_arg],
                                 stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        servers.append(serve)
        # "flowscope: serving LAKE at http://ADDR/" on its first line of output.
        first = serve.stdout.readline()
        addr = first.split("http://", 1)[1].split()[0].rstrip("/")
        base = f"http://{addr}"
        while records_in(base) < truth["records"]:
            if serve.poll() is not None:
                sys.exit(f"serve stopped: see {work}/serve.log")
            if time.time() - began > 3600:
                sys.exit("catch-up took over an hour")
            time.sleep(0.5)
        catch_up = time.time() - began
        peak_catch_up = peak_mb(serve.pid)
        rows = sql(base, "SELECT count(*), sum(bytes) FROM flows")[0]
        ok = rows[0] == truth["records"] and rows[1] == truth["bytes_sum"]
        print(f"serve catch-up: {catch_up:.1f} s, peak {peak_catch_up} MB; lake {rows[0]:,} "
              f"records, sum of bytes {rows[1]:,} "
              f"({'equal to' if ok else 'DIFFERENT from'} the data maker's)", flush=True)

        # 4. Steady: new objects (another seed, the next day), one at a time.
        live = os.path.join(work, "live")
        shutil.rmtree(live, ignore_errors=True)
        per = max(1, truth["records"] // len(keys))
        subprocess.run([sys.executable, os.path.join(HERE, "make_flow_logs.py"), "--out", live,
                        "--records", str(per * a.live), "--files", str(a.live), "--seed", "2",
                        "--start", "2026-11-20T00:00:00Z"], check=True, capture_output=True)
        new = sorted(os.path.relpath(os.path.join(r, n), live)
                     for r, _, names in os.walk(live) for n in names)
        lags = []
        have = rows[0]
        for k in new:
            body = open(os.path.join(live, k), "rb").read()
            n = gzip.decompress(body).count(b"\n") - 1
            s3.put_object(Bucket="live", Key=k, Body=body)
            put = time.time()
            while True:
                seen = sql(base, "SELECT count(*) FROM flows")[0][0]
                if seen >= have + n:
                    break
                if time.time() - put > 120:
                    sys.exit("a live object did not arrive within 120 s")
                time.sleep(0.05)
            lags.append(time.time() - put)
            have = seen
        peak = peak_mb(serve.pid)
        lags.sort()
        print(f"steady (SQS): {len(lags)} objects, lag median {lags[len(lags) // 2]:.2f} s, "
              f"max {lags[-1]:.2f} s; peak memory over the run {peak} MB", flush=True)
        figures = {
            "records": truth["records"], "objects": len(keys), "gzip_mb":
            round(truth["gzip_bytes"] / 1e6), "local_ingest_s": round(local, 2),
            "boto3_download_s": round(download, 2), "serve_catch_up_s": round(catch_up, 2),
            "catch_up_vs_ingest": round(catch_up / local, 2),
            "catch_up_vs_download": round(catch_up / download, 2),
            "peak_mb_catch_up": peak_catch_up, "peak_mb": peak, "lake_equal": ok,
            "lag_median_s": round(lags[len(lags) // 2], 2),
            "lag_max_s": round(lags[-1], 2),
        }
        print(json.dumps(figures))
        os.kill(serve.pid, signal.SIGINT)
        serve.wait(timeout=60)
    finally:
        for s in servers:
            if s.poll() is None:
                s.kill()
                s.wait()
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
