#!/usr/bin/env python3
"""Named sets end to end: insert throughput with one set, before named sets and now, and
spread over many sets.

Usage: python3 scripts/sets_bench.py --before PATH/TO/server [--seconds S] [--rounds R]

`--before` is a release `server` binary built from a commit before named sets (for example
`git worktree add /tmp/before 0e05506 && cd /tmp/before && cargo build --release --bin
server`). This script builds the current release `server` and `client`, and drives both
servers with the current `client bench -t 1 -c 8` (one load thread, as e2e_bench.py does)
on loopback, each server started on free ports and stopped by PID, every run bounded in
time. Loads run R times, interleaved (before, now, before, now, ...); the table shows
medians and the ratio now/before. Rows only the current server can run (a named set, 100
sets) compare with the current server's `default` row.
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_bench import BIN, ROOT, client_bench, free_port, median_of, stop, wait_port  # noqa: E402


def start(binary):
    frame, http = free_port(), free_port()
    proc = subprocess.Popen([binary, "--frame-addr", f"127.0.0.1:{frame}",
                             "--http-addr", f"127.0.0.1:{http}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(frame, binary)
    return proc, frame


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="a release server from before named sets")
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "server", "--bin", "client"],
                   cwd=ROOT, check=True, timeout=1800)
    now = os.path.join(BIN, "server")
    loads = [
        ("INSERT + runs reply, 8 conns", ["--mix", "insert=1"]),
        ("INSERT ack-only, 8 conns", ["--mix", "ack=1"]),
    ]
    # (label, server, client args)
    runs = []
    for label, load in loads:
        runs.append((label, "before", args.before, ["-c", "8", *load]))
        runs.append((label, "now", now, ["-c", "8", *load]))
    named = [
        ("INSERT + runs reply, 8 conns, one named set", ["--set", "bench"], ["--mix", "insert=1"]),
        ("INSERT ack-only, 8 conns, one named set", ["--set", "bench"], ["--mix", "ack=1"]),
        ("INSERT ack-only, 8 conns, over 100 sets", [], ["--mix", "ack=1", "--sets", "100"]),
    ]
    samples = {}
    for _ in range(args.rounds):
        for label, who, binary, client_args in runs:
            proc, port = start(binary)
            try:
                report = client_bench(port, args.seconds, *client_args)
            finally:
                stop(proc)
            samples.setdefault((label, who), []).append(report["requests_per_s"])
        for label, global_args, client_args in named:
            proc, port = start(now)
            try:
                report = client_bench_global(port, args.seconds, global_args,
                                             ["-c", "8", *client_args])
            finally:
                stop(proc)
            samples.setdefault((label, "now"), []).append(report["requests_per_s"])
    print("| load | before named sets, req/s | now, req/s | now / before |")
    print("|---|---:|---:|---:|")
    for label, _ in loads:
        b, n = median_of(samples[(label, "before")]), median_of(samples[(label, "now")])
        print(f"| {label} | {b:,.0f} | {n:,.0f} | {n / b:.3f}x |")
    for label, _, client_args in named:
        base = "INSERT + runs reply, 8 conns" if "insert=1" in client_args else "INSERT ack-only, 8 conns"
        n, d = median_of(samples[(label, "now")]), median_of(samples[(base, "now")])
        print(f"| {label} | – | {n:,.0f} | {n / d:.3f}x of `default` now |")
    print(f"\nMedians of {args.rounds} interleaved rounds of {args.seconds} s each: "
          f"`python3 scripts/sets_bench.py --before ... --seconds {args.seconds} "
          f"--rounds {args.rounds}`")


def client_bench_global(port, seconds, global_args, bench_args):
    """`client bench` with options before the subcommand (`--set`)."""
    import json
    out = subprocess.run([os.path.join(BIN, "client"), "--addr", f"127.0.0.1:{port}", "--json",
                          *global_args, "bench", "-t", "1", "-d", str(seconds), *bench_args],
                         capture_output=True, text=True, timeout=seconds * 4 + 60)
    if out.returncode != 0:
        sys.exit(f"client bench failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


if __name__ == "__main__":
    main()
