#!/usr/bin/env python3
"""What one request costs the server: CPU time (user and kernel) and syscalls per request.

Usage: python3 scripts/request_cost.py [--seconds S] [--threads N]

The same figures for nginx (1 worker, `return 200 "ok"`) under the same `wrk` load come
last, for comparison: what one HTTP request costs a server that does nothing else.

Builds and starts the release `server` (`--threads N`, default 1) on free loopback ports and,
one load at a time, drives it with `wrk -t1 -c8` (HTTP `GET /health`, `GET /array?format=runs`)
and `client bench -t 1 -c 8` (frame INSERT of 10-20 values with the sorted reply; frame PING
is not offered by the load generator, so INSERT with an ACK reply stands in for the cheapest
frame request). For each load it reads the server's utime and stime from /proc/PID/stat before
and after and divides by the requests the load generator counted; then it repeats the load
under `strace -c -f -p PID` (which slows it, so only the counts are used) for syscalls per
request by name. Prints one Markdown table. The server is started and stopped by PID, bound
to 127.0.0.1; every run is bounded in time.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_bench import BIN, ROOT, clear, ensure, free_port, run, stop, wait_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """(user, system) CPU seconds of every thread of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def load(kind, ports, seconds):
    """Runs one load; returns the requests it completed."""
    frame, http = ports
    if kind.startswith("http") or kind.startswith("nginx"):
        path = kind.split(" ", 1)[1]
        out = run(["wrk", "-t1", "-c8", f"-d{seconds}s", f"http://127.0.0.1:{http}{path}"],
                  timeout=seconds + 60)
        m = re.search(r"(\d+) requests in", out)
        return int(m.group(1))
    mix = "insert=1" if kind == "frame insert" else "ack=1"
    out = run([os.path.join(BIN, "client"), "--addr", f"127.0.0.1:{frame}", "--json", "bench",
               "-t", "1", "-c", "8", "-d", str(seconds), "--mix", mix], timeout=seconds * 4 + 60)
    return json.loads(out)["requests"]


def syscalls(pid, kind, ports, seconds):
    """Syscalls per request by name, from strace -c over one run of the load."""
    trace = subprocess.Popen(["strace", "-c", "-f", "-q", "-p", str(pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # strace attaches to every thread before the load starts
        requests = load(kind, ports, seconds)
    finally:
        trace.send_signal(signal.SIGINT)
        try:
            _, err = trace.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            trace.kill()
            raise
    counts = {}
    for line in err.splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    # The event loop's waits count too (a few idle ones around the load included): a
    # request costs its share of them.
    return {name: n / requests for name, n in counts.items()}, requests


def start_nginx():
    """nginx with one worker answering `return 200`; (master process, worker pid, port)."""
    port = free_port()
    ndir = tempfile.mkdtemp(prefix="sortd-nginx-")
    conf = os.path.join(ndir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {ndir}/nginx.pid; error_log {ndir}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {ndir}; proxy_temp_path {ndir}; fastcgi_temp_path {ndir};
  uwsgi_temp_path {ndir}; scgi_temp_path {ndir};
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }} }}
""")
    master = subprocess.Popen(["nginx", "-c", conf, "-p", ndir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, "nginx")
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(f"/proc/{master.pid}/task/{master.pid}/children") as f:
                children = f.read().split()
            if children:
                return master, int(children[0]), port
            time.sleep(0.05)
        raise RuntimeError("nginx started no worker")
    except BaseException:
        stop(master, timeout=0)
        raise


def row(kind, pid, ports, seconds):
    u0, s0 = cpu_seconds(pid)
    t0 = time.time()
    requests = load(kind, ports, seconds)
    elapsed = time.time() - t0
    u1, s1 = cpu_seconds(pid)
    per, _ = syscalls(pid, kind, ports, seconds)
    top = sorted(per.items(), key=lambda kv: -kv[1])[:4]
    print(f"| {kind} | {requests / elapsed:,.0f} | {(u1 - u0) / requests * 1e6:.2f} | "
          f"{(s1 - s0) / requests * 1e6:.2f} | {sum(per.values()):.2f} | "
          + ", ".join(f"{name} {n:.2f}" for name, n in top) + " |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)
    ports = (free_port(), free_port())
    server = subprocess.Popen([os.path.join(BIN, "server"), "--frame-addr",
                               f"127.0.0.1:{ports[0]}", "--http-addr", f"127.0.0.1:{ports[1]}",
                               "--threads", str(args.threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(ports[0], "server")
        # The runs reply with the service's data: 101 values, as after the original's use.
        def seed():
            run([os.path.join(BIN, "client"), "--addr", f"127.0.0.1:{ports[0]}", "insert",
                 *map(str, range(101))], timeout=30)

        seed()
        print(f"server --threads {args.threads}; loads of {args.seconds} s; "
              f"{os.cpu_count()} CPUs; load generator on the same machine\n")
        print("| request | req/s | user µs/req | kernel µs/req | syscalls/req | main syscalls per request |")
        print("|---|---:|---:|---:|---:|---|")
        for kind in ["http /health", "http /array?format=runs", "frame insert", "frame ack"]:
            row(kind, server.pid, ports, args.seconds)
            if kind.startswith("frame"):
                clear(ports[0])
                seed()
        if ensure("nginx", "nginx-light"):
            master, worker, port = start_nginx()
            try:
                row("nginx /", worker, (None, port), args.seconds)
            finally:
                stop(master)
    finally:
        stop(server)


if __name__ == "__main__":
    main()
