#!/usr/bin/env python3
"""Memory: server RSS after 10 million inserted values, sortd against a Redis sorted set.

Usage: python3 scripts/memory_bench.py [--values N]

For each distribution (the original's 0..=100, and uniform over 0..=10^9: almost every value
distinct) starts a fresh release `server` (in memory) and inserts N values with `client bench`
(ack-only, 100 values per INSERT, 8 connections pipelined x16), then reads VmRSS from
/proc/PID/status and the distinct count from STATS. Redis gets the same work as ZINCRBY of
`__rand_int__` members through redis-benchmark (-r 101 or -r 1000000001, pipelined x16) and
reports `used_memory` and `used_memory_rss` from INFO memory. Bytes per distinct value are the
growth over the empty server divided by the distinct values. Servers are started and stopped by
PID on 127.0.0.1.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_bench import BIN, ROOT, ensure, free_port, run, wait_port  # noqa: E402

DISTS = [("0..=100", "original", 101), ("uniform 0..=10^9", "uniform", 1_000_000_001)]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def sortd(dist, values):
    frame, http = free_port(), free_port()
    server = subprocess.Popen([os.path.join(BIN, "server"), "--frame-addr", f"127.0.0.1:{frame}",
                               "--http-addr", f"127.0.0.1:{http}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(frame, "sortd")
        empty = rss_bytes(server.pid)
        run([os.path.join(BIN, "client"), "--addr", f"127.0.0.1:{frame}", "--json", "bench",
             "-n", str(values // 100), "--batch", "100", "-c", "8", "-p", "16", "--mix", "ack=1",
             "--dist", dist], timeout=600)
        full = rss_bytes(server.pid)
        stats = json.loads(run([os.path.join(BIN, "client"), "--addr", f"127.0.0.1:{frame}",
                                "--json", "stats"], timeout=60))
        return empty, full, stats["len"], stats["distinct"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def redis_info(port):
    out = run(["redis-cli", "-p", str(port), "info", "memory"], timeout=60)
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return int(info["used_memory"]), int(info["used_memory_rss"])


def redis(r, values):
    port = free_port()
    rdir = tempfile.mkdtemp(prefix="sortd-redis-")
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
                               "", "--appendonly", "no", "--dir", rdir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, "redis-server")
        empty = redis_info(port)
        run(["redis-benchmark", "-p", str(port), "-q", "-n", str(values), "-c", "8", "-P", "16",
             "-r", str(r), "zincrby", "z", "1", "__rand_int__"], timeout=900)
        full = redis_info(port)
        card = int(run(["redis-cli", "-p", str(port), "zcard", "z"], timeout=60).strip())
        return empty, full, card
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--values", type=int, default=10_000_000, help="values inserted per run")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bins", "-q"], cwd=ROOT, check=True)
    have_redis = ensure("redis-server", "redis-server") and ensure("redis-benchmark", "redis-tools")
    print(f"`python3 scripts/memory_bench.py --values {args.values}`\n")
    print("| values | server | distinct | memory after | growth per distinct value |")
    print("|---|---|---:|---:|---:|")
    for name, dist, r in DISTS:
        empty, full, total, distinct = sortd(dist, args.values)
        print(f"| {total:,} in {name} | sortd (VmRSS) | {distinct:,} | {full / 2**20:,.1f} MiB "
              f"| {(full - empty) / distinct:,.1f} B |")
        if have_redis:
            (used0, rss0), (used1, rss1), card = redis(r, args.values)
            print(f"| {args.values:,} in {name} | Redis (used_memory) | {card:,} | "
                  f"{used1 / 2**20:,.1f} MiB | {(used1 - used0) / card:,.1f} B |")
            print(f"| {args.values:,} in {name} | Redis (used_memory_rss) | {card:,} | "
                  f"{rss1 / 2**20:,.1f} MiB | {(rss1 - rss0) / card:,.1f} B |")


if __name__ == "__main__":
    main()
