#!/usr/bin/env python3
"""Order statistics end to end, sortd against Redis, on the same data, with writers running.

Usage: python3 scripts/order_bench.py [--seconds S] [--large N]

Starts the release `server` and `redis-server` (installed with apt-get when missing) on free
loopback ports. For each shape (the service's 101 values, 100 occurrences each; N distinct
values 0, 100, 200, ... spread over 0..=10^9 like `client bench --dist uniform`, default
N = 10,000,000) it loads both with the same values (Redis: a sorted set whose members and
scores are the values, so it holds each distinct value once: the 101 values, not their 10,100
occurrences). Then for each read, one server at a time, it starts two writer
connections inserting one value per request (sortd: `client bench --mix ack=1 --batch 1`;
Redis: `redis-benchmark ZADD`), drives the read with 8 connections while they run, and stops
them:

  rank         sortd RANK v                     Redis ZCOUNT key -inf v   (ZRANK needs a member)
  select       sortd SELECT k                   Redis ZRANGE key k k (in EVAL: redis-benchmark's
                                                 zero-padded __rand_int__ is no integer to ZRANGE)
  count        sortd COUNT_RANGE v..=v+span/10  Redis ZCOUNT key v +inf
  page of 100  sortd PAGE from v, 100           Redis ZRANGEBYSCORE key v +inf LIMIT 0 100

and prints ops/s and p99 for both (sortd's from `client bench`, Redis's from
`redis-benchmark --csv`). Every process is started and stopped by PID, bound to 127.0.0.1;
every run is bounded in time.
"""
import argparse
import array
import json
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_bench import BIN, ROOT, clear, ensure, free_port, redis_bench, run, stop, wait_port  # noqa: E402

KEY = "ms"


def sortd_load(port, values):
    """Inserts `values` with ACK-only INSERT frames of 100,000 values, pipelined."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        sent = 0
        for i in range(0, len(values), 100_000):
            chunk = array.array("q", values[i:i + 100_000])
            payload = struct.pack("<I", len(chunk)) + chunk.tobytes()
            s.sendall(struct.pack("<BBHII", 1, 0x01, 1, i, len(payload)) + payload)
            sent += 1
        f = s.makefile("rb")
        for _ in range(sent):
            header = f.read(12)
            _, opcode, _, _, length = struct.unpack("<BBHII", header)
            f.read(length)
            if opcode != 0x82:
                sys.exit(f"sortd refused a load frame (opcode {opcode:#x})")


def redis_load(port, values):
    """ZADD of every value (member and score alike), 1,000 per command, pipelined."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        commands = 0
        for i in range(0, len(values), 1000):
            parts = [b"ZADD", KEY.encode()]
            for v in values[i:i + 1000]:
                text = str(v).encode()
                parts += [text, text]
            s.sendall(b"*%d\r\n" % len(parts)
                      + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
            commands += 1
        f = s.makefile("rb")
        for _ in range(commands):
            line = f.readline()
            if not line.startswith(b":"):
                sys.exit(f"redis refused a load command: {line!r}")


def redis_cmd(port, *args):
    return run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], timeout=120).strip()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--large", type=int, default=10_000_000)
    args = parser.parse_args()
    if not ensure("redis-server", "redis-server") or not ensure("redis-benchmark", "redis-tools"):
        sys.exit("redis-server and redis-benchmark are needed")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)
    frame, http, rport = free_port(), free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [os.path.join(BIN, "server"), "--frame-addr", f"127.0.0.1:{frame}",
             "--http-addr", f"127.0.0.1:{http}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(frame, "sortd")
        wait_port(rport, "redis-server")
        secs = args.seconds
        print(f"reads with 8 connections while 2 writer connections insert into the server "
              f"measured, "
              f"{secs} s each; `python3 scripts/order_bench.py --seconds {secs}`\n")
        print("| distinct | read | sortd ops/s | sortd p99 µs | Redis ops/s | Redis p99 µs | Redis command |")
        print("|---|---|---:|---:|---:|---:|---|")
        # Values made per shape, so the large list is freed before the next one is built.
        shapes = [("101", lambda: [v for v in range(101) for _ in range(100)], "original", 101),
                  (f"{args.large:,}", lambda: [100 * i for i in range(args.large)], "uniform",
                   100 * args.large)]
        for name, make, dist, span in shapes:
            values = make()
            clear(frame)
            redis_cmd(rport, "DEL", KEY)
            sortd_load(frame, values)
            redis_load(rport, values)
            distinct = len(set(values)) if len(values) < 1_000_000 else len(values)
            del values
            def writers(server):
                if server == "sortd":
                    cmd = [os.path.join(BIN, "client"), "--addr", f"127.0.0.1:{frame}", "bench",
                           "-c", "2", "-t", "1", "--mix", "ack=1", "--dist", dist, "--batch",
                           "1", "-d", str(4 * secs + 60)]
                else:
                    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(rport), "-c", "2",
                           "-n", "100000000", "-r", str(span), "ZADD", KEY, "__rand_int__",
                           "__rand_int__"]
                p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(p)
                time.sleep(0.5)  # under way before the reads start
                return p

            select_lua = "return redis.call('ZRANGE', KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[1]))"
            reads = [
                ("rank", "rank=1", ["ZCOUNT", KEY, "-inf", "__rand_int__"], span),
                ("select", "select=1", ["EVAL", select_lua, "1", KEY, "__rand_int__"], distinct),
                ("count", "count=1", ["ZCOUNT", KEY, "__rand_int__", "+inf"], span),
                ("page of 100", "page=1",
                 ["ZRANGEBYSCORE", KEY, "__rand_int__", "+inf", "LIMIT", "0", "100"], span),
            ]
            for read, mix, command, rand in reads:
                w = writers("sortd")
                ours = json.loads(run(
                    [os.path.join(BIN, "client"), "--addr", f"127.0.0.1:{frame}", "--json",
                     "bench", "-c", "8", "-t", "1", "-d", str(secs), "--mix", mix, "--dist",
                     dist], timeout=secs * 10 + 120))
                stop(w)
                w = writers("redis")
                # A request count that takes about `secs` at Redis's usual rate for these.
                theirs, p99 = redis_bench(rport, secs, 40_000 * secs, "-r", str(rand), *command,
                                          p99=True)
                stop(w)
                shown = "ZRANGE key k k (in EVAL)" if command[0] == "EVAL" else " ".join(command)
                print(f"| {name} | {read} | {ours['requests_per_s']:,.0f} | "
                      f"{ours['latency_us']['p99']:,} | {theirs:,.0f} | {p99:,.0f} | "
                      f"`{shown}` |", flush=True)
    finally:
        for p in procs:
            stop(p)


if __name__ == "__main__":
    main()
