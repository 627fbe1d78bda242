#!/usr/bin/env python3
"""sortd's RESP listener against redis-server, both driven by the same redis-benchmark.

Usage: python3 scripts/resp_bench.py [--seconds S] [--rounds R] [--pin] [--before SERVER]

Starts the release `server` twice with `--resp-addr` (one event loop, `--threads 1`, and the
default two) and `redis-server` (no persistence), all on free loopback ports, installing
redis-server and redis-tools with apt-get when missing. Each load runs redis-benchmark against
each server in turn, R rounds interleaved (sortd 1 loop, Redis, sortd 2 loops, ...), about S
seconds a run (the request count is calibrated once per load and server from a short run):

  PING_INLINE                 redis-benchmark -t ping_inline
  MS.ADD key __rand_int__      against   ZINCRBY key 1 __rand_int__   (-r 100000)

each at 8 connections, 8 connections pipelined -P 16, and 512 connections. The key is
deleted before each run. Prints medians and the ratios of each round, then the CPU time per
request of each server and of redis-benchmark itself (when the load generator needs more than
the server, it sets the pace for both servers and the ratio says little). `--before SERVER`
adds a one-loop run of another binary, `--loads TEXT` keeps the loads whose name contains TEXT.
Every process is started and stopped by PID, bound to 127.0.0.1; every run is bounded in time.
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_bench import BIN, ROOT, ensure, free_port, median_of, redis_bench, stop, wait_port  # noqa: E402

LOADS = [
    ("PING_INLINE", "8 conns", 8, 1),
    ("PING_INLINE", "8 conns, -P 16", 8, 16),
    ("PING_INLINE", "512 conns", 512, 1),
    ("ADD", "8 conns", 8, 1),
    ("ADD", "8 conns, -P 16", 8, 16),
    ("ADD", "512 conns", 512, 1),
]


def command(load, ours):
    if load == "PING_INLINE":
        return ["-t", "ping_inline"]
    if ours:
        return ["-r", "100000", "MS.ADD", "bench", "__rand_int__"]
    return ["-r", "100000", "ZINCRBY", "bench", "1", "__rand_int__"]


def pinned(cpu, cmd):
    """`cmd` pinned to `cpu` with taskset when --pin is given (and taskset exists)."""
    return ["taskset", "-c", str(cpu), *cmd] if cpu is not None and shutil.which("taskset") else cmd


def cpu_ticks(pid):
    """User and system clock ticks the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def delete(port):
    subprocess.run(["redis-cli", "-p", str(port), "DEL", "bench"], capture_output=True, timeout=30,
                   check=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=3, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per load; medians are shown")
    parser.add_argument("--pin", action="store_true",
                        help="pin redis-benchmark to CPU 0, and Redis and sortd's one loop to CPU 1 "
                             "(sortd's two loops stay unpinned): less scheduler noise")
    parser.add_argument("--before", help="another server binary (an older build, say) to run with "
                                          "one loop as well, interleaved with the rest")
    parser.add_argument("--loads", help="only the loads whose name contains this (\"512\", \"PING\")")
    args = parser.parse_args()
    loads = [l for l in LOADS if not args.loads or args.loads in f"{l[0]}, {l[1]}"]
    client_cpu, server_cpu = (0, 1) if args.pin else (None, None)
    if not (ensure("redis-server", "redis-server") and ensure("redis-benchmark", "redis-tools")):
        sys.exit("redis-server and redis-benchmark are needed")
    subprocess.run(["cargo", "build", "--release", "--bins", "-q"], cwd=ROOT, check=True)
    procs = []
    rdir = tempfile.mkdtemp(prefix="sortd-redis-")
    try:
        servers, pids = {}, {}
        ours = [("sortd, 1 loop", ["--threads", "1"], os.path.join(BIN, "server")),
                ("sortd, 2 loops", [], os.path.join(BIN, "server"))]
        if args.before:
            ours.append(("before, 1 loop", ["--threads", "1"], args.before))
        for name, extra, binary in ours:
            port = free_port()
            procs.append(subprocess.Popen(pinned(
                server_cpu if extra else None,
                [binary, "--frame-addr", f"127.0.0.1:{free_port()}",
                 "--http-addr", f"127.0.0.1:{free_port()}", "--resp-addr", f"127.0.0.1:{port}",
                 *extra]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(port, name)
            servers[name] = port
            pids[name] = procs[-1].pid
        port = free_port()
        procs.append(subprocess.Popen(pinned(server_cpu, [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", rdir]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(port, "redis-server")
        servers["Redis"] = port
        pids["Redis"] = procs[-1].pid
        order = ["sortd, 1 loop", "Redis", "sortd, 2 loops"] + (["before, 1 loop"] if args.before
                                                                 else [])

        results = {}  # (load, shape) -> server -> [req/s]
        cost = {}  # (load, shape) -> server -> [(user µs, system µs) per request]
        client = {}  # the same for redis-benchmark, the load generator
        requests = {}  # (load, shape, server) -> request count for about --seconds
        for _ in range(args.rounds):
            for load, shape, conns, pipeline in loads:
                for name in order:
                    port = servers[name]
                    cmd = ["-P", str(pipeline), *command(load, name != "Redis")]
                    key = (load, shape, name)
                    if key not in requests:
                        delete(port)
                        guess = redis_bench(port, 1, 20_000 * pipeline, *cmd, conns=conns,
                                            cpu=client_cpu)
                        requests[key] = max(10_000, int(guess * args.seconds))
                    delete(port)
                    before = cpu_ticks(pids[name])
                    child = resource.getrusage(resource.RUSAGE_CHILDREN)
                    rps = redis_bench(port, args.seconds, requests[key], *cmd, conns=conns,
                                      cpu=client_cpu)
                    after = cpu_ticks(pids[name])
                    done = resource.getrusage(resource.RUSAGE_CHILDREN)
                    client.setdefault((load, shape), {}).setdefault(name, []).append(
                        ((done.ru_utime - child.ru_utime) * 1e6 / requests[key],
                         (done.ru_stime - child.ru_stime) * 1e6 / requests[key]))
                    results.setdefault((load, shape), {}).setdefault(name, []).append(rps)
                    tick = 1e6 / os.sysconf("SC_CLK_TCK")
                    cost.setdefault((load, shape), {}).setdefault(name, []).append(
                        tuple((b - a) * tick / requests[key] for a, b in zip(before, after)))
    finally:
        for p in procs:
            stop(p, timeout=10)
        shutil.rmtree(rdir, ignore_errors=True)

    pin = (" --pin" if args.pin else "") + (f" --before {args.before}" if args.before else "")
    where = ("redis-benchmark pinned to CPU 0, Redis and sortd's one loop to CPU 1" if args.pin
             else "redis-benchmark's one thread and the servers sharing this machine's cores")
    print(f"\nmedians of {args.rounds} rounds, about {args.seconds} s per run, one load at a time, "
          f"127.0.0.1, {where}; "
          f"`python3 scripts/resp_bench.py --seconds {args.seconds} --rounds {args.rounds}{pin}`\n")
    print("| load | Redis | sortd, 1 loop | ratio | sortd, 2 loops | ratio | ratios per round "
          "(1 loop; 2 loops) |\n|---|---:|---:|---:|---:|---:|---|")
    for (load, shape), by in results.items():
        redis = by["Redis"]
        label = ("`MS.ADD key __rand_int__` vs `ZINCRBY key 1 __rand_int__`" if load == "ADD"
                 else "`PING_INLINE`")
        cells = []
        for name in ("sortd, 1 loop", "sortd, 2 loops"):
            ours = by[name]
            cells.append(f"{median_of(ours):,.0f} | {median_of(ours) / median_of(redis):.2f}x")
        rounds = "; ".join(", ".join(f"{a / b:.2f}" for a, b in zip(by[name], redis))
                           for name in ("sortd, 1 loop", "sortd, 2 loops"))
        print(f"| {label}, {shape} | {median_of(redis):,.0f} | {cells[0]} | {cells[1]} | "
              f"{rounds} |")
    if args.before:
        print("\n| load | before, 1 loop | sortd, 1 loop | after / before |\n|---|---:|---:|---:|")
        for (load, shape), by in results.items():
            was, now = median_of(by["before, 1 loop"]), median_of(by["sortd, 1 loop"])
            print(f"| {load}, {shape} | {was:,.0f} | {now:,.0f} | {now / was:.2f}x |")
    print("\nServer CPU per request, µs of user + system time (from /proc/PID/stat around each "
          "run), medians:\n")
    cpu_table(cost, "| load | Redis | sortd, 1 loop | sortd, 2 loops |")
    print("\nredis-benchmark's own CPU per request (the load generator; from getrusage of the "
          "finished child), medians: when it is above the server's, the client sets the pace\n")
    cpu_table(client, "| load | against Redis | against sortd, 1 loop | against sortd, 2 loops |")


def cpu_table(samples, header):
    """A Markdown table of median user + system µs per request, per load and server."""
    print(f"{header}\n|---|---:|---:|---:|")
    for (load, shape), by in samples.items():
        label = "MS.ADD vs ZINCRBY" if load == "ADD" else "PING_INLINE"
        cells = [f"{median_of([u for u, _ in by[n]]):.2f} + {median_of([s for _, s in by[n]]):.2f}"
                 for n in ("Redis", "sortd, 1 loop", "sortd, 2 loops")]
        print(f"| {label}, {shape} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
