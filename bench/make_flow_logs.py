#!/usr/bin/env python3
"""Seeded flow log files in AWS's S3 layout, made without any of flowscope's code.

    bench/make_flow_logs.py --out DIR [--records N] [--files F] [--seed S] [--start ISO]
                            [--big-files K] [--custom-every M]

Writes F gzip objects (default 300) holding N default-format (version 2) records (default
1,000,000) under DIR/AWSLogs/{account}/vpcflowlogs/{region}/YYYY/MM/DD/, named as AWS names
them ({account}_vpcflowlogs_{region}_{flow-log-id}_{YYYYMMDDTHHmmZ}_{hash}.log.gz), each
beginning with its header line, for four flow logs in two accounts and two regions taking
turns over 5-minute windows. The traffic is skewed the way a real VPC's is: a few busy clients
and many quiet ones (Pareto), a few services per client, most requests answered (a request
record and its reply), internet scanners refused on random ports, some NODATA records.
Prints a JSON summary (records, files, bytes of gzip, the sum of `bytes` over records with
data) so that whatever reads the files can be checked against it. Two worker processes.

--big-files K makes K of the files (spread through the set) hold half of all records between
them, the rest sharing the other half: many small objects and a few large ones, as a busy flow
log beside quiet ones gives. --custom-every M writes every M-th file in a custom format (AWS's
version 5 fields in another order: vpc-id, subnet-id, flow-direction and tcp-flags added) for a
fifth flow log of its own, so that one set mixes formats as a real bucket does.
"""

import argparse
import gzip
import hashlib
import json
import os
import random
import sys
import zlib
from datetime import datetime, timedelta, timezone
from multiprocessing import Pool

HEADER = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol "
          "packets bytes start end action log-status\n")
FLOW_LOGS = [
    ("111122223333", "us-east-1", "fl-0a1b2c3d4e5f60718"),
    ("111122223333", "eu-west-1", "fl-09f8e7d6c5b4a3921"),
    ("444455556666", "us-east-1", "fl-0123456789abcdef0"),
    ("444455556666", "ap-southeast-2", "fl-0fedcba9876543210"),
]
# The flow log whose files are in the custom format (with --custom-every).
CUSTOM_FLOW_LOG = ("111122223333", "us-east-1", "fl-0c0ffee0000000001")
CUSTOM_HEADER = ("version vpc-id subnet-id interface-id account-id srcaddr dstaddr srcport "
                 "dstport protocol packets bytes start end action log-status flow-direction "
                 "tcp-flags\n")
SERVICES = [(443, 6), (443, 6), (443, 6), (80, 6), (5432, 6), (3306, 6), (6379, 6), (22, 6),
            (53, 17), (53, 17), (123, 17), (8080, 6)]


def pools(seed):
    rng = random.Random(seed)
    clients = [f"10.{rng.randrange(0, 4)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"
               for _ in range(3000)]
    servers = [f"10.{rng.randrange(4, 8)}.{rng.randrange(0, 16)}.{rng.randrange(1, 255)}"
               for _ in range(60)]
    outside = [f"{rng.choice([52, 54, 13, 35, 142, 151])}.{rng.randrange(256)}."
               f"{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(400)]
    enis = [f"eni-{rng.getrandbits(68):017x}" for _ in range(120)]
    return clients, servers, outside, enis


def custom_line(line, eni_vpc):
    """A default-format line in the custom format (v5 fields in another order)."""
    f = line.split()
    vpc, subnet = eni_vpc[f[2]]
    if f[13] == "NODATA":
        direction, flags = "-", "-"
    else:
        # Requests go to the low port, replies come from it.
        ingress = f[4].startswith("10.") and int(f[6]) < 32768
        direction = "ingress" if ingress else "egress"
        flags = "2" if f[12] == "REJECT" else str(rng_flags(f))
    return " ".join(["5", vpc, subnet, f[2], f[1], *f[3:14], direction, flags]) + "\n"


def rng_flags(fields):
    # SYN, SYN-ACK or FIN over the connection's life, as the tcp-flags field ORs them.
    return (3, 18, 19, 1)[zlib.crc32(" ".join(fields[3:7]).encode()) % 4] if fields[7] == "6" else 0


def one_file(job):
    (index, count, seed, start, out, custom_every) = job
    rng = random.Random(seed * 1_000_003 + index)
    clients, servers, outside, enis = pools(seed)
    custom = custom_every > 0 and index % custom_every == custom_every - 1
    account, region, flow_log = (CUSTOM_FLOW_LOG if custom
                                 else FLOW_LOGS[index % len(FLOW_LOGS)])
    window = start + (index // len(FLOW_LOGS)) * 300
    when = datetime.fromtimestamp(window, timezone.utc)
    folder = os.path.join(out, "AWSLogs", account, "vpcflowlogs", region,
                          f"{when:%Y}", f"{when:%m}", f"{when:%d}")
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha1(f"{seed}-{index}".encode()).hexdigest()[:8]
    name = f"{account}_vpcflowlogs_{region}_{flow_log}_{when:%Y%m%dT%H%MZ}_{digest}.log.gz"
    lines = [HEADER]
    total_bytes = 0
    written = 0
    n_clients = len(clients)
    while written < count:
        t0 = window + rng.randrange(0, 300)
        t1 = t0 + rng.randrange(0, 61)
        eni = enis[int(rng.paretovariate(1.2)) % len(enis)]
        roll = rng.random()
        if roll < 0.01:
            lines.append(f"2 {account} {eni} - - - - - - - {t0} {t1} - NODATA\n")
            written += 1
            continue
        if roll < 0.05:
            src = outside[rng.randrange(len(outside))]
            dst = servers[rng.randrange(len(servers))]
            packets = rng.randrange(1, 4)
            b = packets * 40
            lines.append(f"2 {account} {eni} {src} {dst} {rng.randrange(1024, 65536)} "
                         f"{rng.randrange(1, 10000)} 6 {packets} {b} {t0} {t1} REJECT OK\n")
            total_bytes += b
            written += 1
            continue
        client = clients[int(rng.paretovariate(1.1) * 7) % n_clients]
        # A few services per client: its choice depends on the client.
        h = zlib.crc32(client.encode())
        eni = enis[h % len(enis)]
        port, proto = SERVICES[(h + rng.randrange(3)) % len(SERVICES)]
        server = servers[(h // 7 + rng.randrange(2)) % len(servers)]
        if rng.random() < 0.08:
            server = outside[rng.randrange(len(outside))]
        sport = rng.randrange(32768, 61000)
        packets = int(rng.paretovariate(1.5) * 3)
        b = packets * rng.randrange(60, 1500)
        lines.append(f"2 {account} {eni} {client} {server} {sport} {port} {proto} "
                     f"{packets} {b} {t0} {t1} ACCEPT OK\n")
        total_bytes += b
        written += 1
        if written < count and rng.random() < 0.85:
            rp = max(1, packets - rng.randrange(0, 2))
            rb = rp * rng.randrange(60, 1500)
            lines.append(f"2 {account} {eni} {server} {client} {port} {sport} {proto} "
                         f"{rp} {rb} {t0} {t1} ACCEPT OK\n")
            total_bytes += rb
            written += 1
    if custom:
        eni_vpc = {e: (f"vpc-{zlib.crc32(e.encode()) % 4:017x}",
                       f"subnet-{zlib.crc32(e.encode()) % 16:017x}") for e in enis}
        lines = [CUSTOM_HEADER] + [custom_line(line, eni_vpc) for line in lines[1:]]
    path = os.path.join(folder, name)
    with gzip.open(path, "wb", compresslevel=6) as f:
        f.write("".join(lines).encode())
    return written, total_bytes, os.path.getsize(path)


def shares(records, files, big):
    """Records per file: even, or with `big` files (spread out) holding half of them."""
    if big == 0:
        per, extra = divmod(records, files)
        return [per + (1 if i < extra else 0) for i in range(files)]
    large = {i * files // big + files // (2 * big) for i in range(big)}
    counts = []
    for group, n in ((large, records // 2), (None, records - records // 2)):
        members = [i for i in range(files) if (i in large) == (group is not None)]
        per, extra = divmod(n, len(members))
        counts += [(i, per + (1 if k < extra else 0)) for k, i in enumerate(members)]
    return [n for _, n in sorted(counts)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", default="2026-11-02T00:00:00Z")
    p.add_argument("--big-files", type=int, default=0)
    p.add_argument("--custom-every", type=int, default=0)
    a = p.parse_args()
    if a.records < 1 or a.files < 1 or a.files > 1_000_000:
        sys.exit("--records and --files must be positive (at most a million files)")
    if not 0 <= a.big_files < a.files or a.custom_every < 0:
        sys.exit("--big-files must be below --files, --custom-every at least 0")
    start = int(datetime.fromisoformat(a.start.replace("Z", "+00:00")).timestamp())
    start -= start % 300
    counts = shares(a.records, a.files, a.big_files)
    jobs = [(i, counts[i], a.seed, start, a.out, a.custom_every) for i in range(a.files)]
    with Pool(2) as pool:
        done = pool.map(one_file, jobs, chunksize=4)
    print(json.dumps({
        "records": sum(d[0] for d in done),
        "bytes_sum": sum(d[1] for d in done),
        "files": a.files,
        "gzip_bytes": sum(d[2] for d in done),
    }))


if __name__ == "__main__":
    main()
