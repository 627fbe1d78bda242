#!/usr/bin/env python3
"""Insert throughput by persistence mode: in memory, --fsync never, everysec, always.

Usage: python3 scripts/persist_bench.py [--seconds S] [--rounds R] [--before SERVER] [--threads N]

Builds the release binaries; for each round and each mode (interleaved, so drift on a shared
machine hits every mode alike) starts `server` on free loopback ports, with a fresh data directory
under target/ (a real disk, not tmpfs), drives it with `client bench -c 8` (INSERT of 10-20 values
in 0..=100; once with the sorted-runs reply, once ack-only, once pipelined x16), and stops it by
PID. Prints one Markdown table of medians over the rounds, with ratios against in-memory.

`--before PATH` adds every persisting mode once more with another `server` binary (an older
build, say), interleaved with the rest, for before/after figures from one run.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_bench import BIN, ROOT, client_bench, free_port, wait_port  # noqa: E402

MODES = [("in memory", []), ("--fsync never", ["never"]), ("--fsync everysec", ["everysec"]),
         ("--fsync always", ["always"])]
LOADS = [("INSERT + runs reply, 8 conns", ["-c", "8"]),
         ("INSERT ack-only, 8 conns", ["-c", "8", "--mix", "ack=1"]),
         ("INSERT ack-only, 8 conns, pipelined ×16", ["-c", "8", "-p", "16", "--mix", "ack=1"])]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode and load")
    parser.add_argument("--before", help="another server binary to run the persisting modes on")
    parser.add_argument("--threads", type=int, help="the servers' --threads")
    args = parser.parse_args()
    modes = [(mode, fsync, os.path.join(BIN, "server")) for mode, fsync in MODES]
    if args.before:
        modes += [(f"{mode} (before)", fsync, args.before) for mode, fsync in MODES if fsync]
    subprocess.run(["cargo", "build", "--release", "--bins", "-q"], cwd=ROOT, check=True)
    base = os.path.join(ROOT, "target", "persist-bench")
    os.makedirs(base, exist_ok=True)
    results = {}  # (mode, load) -> [(req/s, p99 us)]
    for _ in range(args.rounds):
        for mode, fsync, binary in modes:
            for load, load_args in LOADS:
                data = tempfile.mkdtemp(dir=base)
                frame, http = free_port(), free_port()
                cmd = [binary, "--frame-addr", f"127.0.0.1:{frame}",
                       "--http-addr", f"127.0.0.1:{http}"]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                if fsync:
                    cmd += ["--data-dir", data, "--fsync", fsync[0]]
                server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_port(frame, "sortd")
                    report = client_bench(frame, args.seconds, *load_args)
                finally:
                    server.send_signal(signal.SIGTERM)
                    server.wait(timeout=30)
                    shutil.rmtree(data, ignore_errors=True)
                results.setdefault((mode, load), []).append(
                    (report["requests_per_s"], report["latency_us"]["p99"]))
    flags = f" --before {args.before}" if args.before else ""
    flags += f" --threads {args.threads}" if args.threads else ""
    print(f"medians of {args.rounds} rounds, {args.seconds} s each; `python3 scripts/persist_bench.py "
          f"--seconds {args.seconds} --rounds {args.rounds}{flags}`\n")
    print("| load | mode | req/s | p99 µs | vs in memory |")
    print("|---|---|---:|---:|---:|")
    for load, _ in LOADS:
        mem = statistics.median(r for r, _ in results[("in memory", load)])
        for mode, _, _ in modes:
            runs = results[(mode, load)]
            rate = statistics.median(r for r, _ in runs)
            p99 = statistics.median(p for _, p in runs)
            print(f"| {load} | {mode} | {rate:,.0f} | {p99:,.0f} | {rate / mem:.2f}x |")


if __name__ == "__main__":
    main()
