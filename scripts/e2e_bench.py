#!/usr/bin/env python3
"""End-to-end benchmark: sortd against Redis (and HTTP against nginx) on loopback, one load at a time.

Usage: python3 scripts/e2e_bench.py [--seconds S]

Builds and starts the release `server` on free loopback ports and drives it with `client bench`;
starts `redis-server` and drives it with `redis-benchmark` on the equivalent work; serves nginx
`return 200` (1 worker) and drives it and sortd's HTTP with `wrk -t1 -c8`. redis-server, nginx and
wrk are installed with apt-get when missing; a peer that cannot be installed is skipped with a
message. Every server is started and stopped by PID, bound to 127.0.0.1, every run bounded in time.
Prints one Markdown table: workload, sortd, peer, ratio.
"""
import argparse
import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
# The original's batch work in one round trip: 15 increments in 0..=100, then the sorted contents.
EVAL_BATCH = ("for i=1,15 do redis.call('ZINCRBY',KEYS[1],1,math.random(0,100)) end "
              "return redis.call('ZRANGE',KEYS[1],0,-1,'WITHSCORES')")
EVAL_ACK = ("for i=1,15 do redis.call('ZINCRBY',KEYS[1],1,math.random(0,100)) end "
            "return redis.call('ZCARD',KEYS[1])")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not start listening on port {port}")


def ensure(tool, package):
    """True if `tool` is on PATH, installing `package` with apt-get first if needed."""
    if shutil.which(tool):
        return True
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-q", package], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", package]):
        subprocess.run(sudo + cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=600)
        if shutil.which(tool):
            return True
    print(f"note: {tool} (Debian package {package}) could not be installed; its rows are skipped",
          file=sys.stderr)
    return False


def run(cmd, timeout):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return out.stdout


def client_bench(frame_port, seconds, *args):
    out = run([os.path.join(BIN, "client"), "--addr", f"127.0.0.1:{frame_port}", "--json", "bench",
               "-d", str(seconds), *args], timeout=seconds * 4 + 60)
    return json.loads(out)


def clear(frame_port):
    run([os.path.join(BIN, "client"), "--addr", f"127.0.0.1:{frame_port}", "clear"], timeout=30)


def redis_bench(port, seconds_hint, requests, *args):
    out = run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "8", "-n", str(requests),
               "--csv", *args], timeout=seconds_hint * 6 + 60)
    rows = [r for r in csv.reader(out.splitlines()) if r and r[0] != "test"]
    return float(rows[-1][1])


def wrk(url, seconds):
    out = run(["wrk", "-t1", "-c8", f"-d{seconds}s", url], timeout=seconds + 60)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5, help="length of each run")
    args = parser.parse_args()
    secs = args.seconds

    subprocess.run(["cargo", "build", "--release", "--bins", "-q"], cwd=ROOT, check=True)
    frame, http = free_port(), free_port()
    procs = []
    rows = []

    def row(name, ours, theirs, unit):
        ratio = f"{ours / theirs:.2f}x" if theirs else "-"
        theirs_s = f"{theirs:,.0f}" if theirs else "skipped"
        rows.append(f"| {name} | {ours:,.0f} {unit} | {theirs_s} | {ratio} |")

    try:
        server = subprocess.Popen([os.path.join(BIN, "server"), "--frame-addr", f"127.0.0.1:{frame}",
                                   "--http-addr", f"127.0.0.1:{http}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(server)
        wait_port(frame, "sortd")

        have_redis = ensure("redis-server", "redis-server") and ensure("redis-benchmark", "redis-tools")
        rport = free_port()
        if have_redis:
            rdir = tempfile.mkdtemp(prefix="sortd-redis-")
            redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", rdir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(redis)
            wait_port(rport, "redis-server")

        def redis_n(rate_guess):
            return max(1000, int(rate_guess * secs))

        # 1. INSERT of 10-20 values in 0..=100 with the sorted reply, 8 connections.
        clear(frame)
        ours = client_bench(frame, secs, "-c", "8")["requests_per_s"]
        theirs = redis_bench(rport, secs, redis_n(15000), "eval", EVAL_BATCH, "1", "s") if have_redis else 0
        row("INSERT batch + sorted reply, 8 conns (vs EVAL 15×ZINCRBY+ZRANGE)", ours, theirs, "req/s")
        ping = redis_bench(rport, secs, redis_n(130000), "-t", "ping") if have_redis else 0
        row("the same (vs Redis PING round trips)", ours, ping, "req/s")

        # 2. Pipelined ×16, in values per second.
        clear(frame)
        ours = client_bench(frame, secs, "-c", "8", "-p", "16")["values_per_s"]
        theirs = redis_bench(rport, secs, redis_n(500000), "-P", "16", "-r", "101", "-t", "zadd") if have_redis else 0
        row("INSERT pipelined ×16, values/s (vs ZADD -P 16)", ours, theirs, "values/s")

        # 3. Ack only.
        clear(frame)
        ours = client_bench(frame, secs, "-c", "8", "--mix", "ack=1")["requests_per_s"]
        theirs = redis_bench(rport, secs, redis_n(25000), "eval", EVAL_ACK, "1", "s") if have_redis else 0
        row("INSERT ack only, 8 conns (vs EVAL 15×ZINCRBY)", ours, theirs, "req/s")

        # 4. GET of the whole multiset (<= 101 runs).
        ours = client_bench(frame, secs, "-c", "8", "--mix", "get=1")["requests_per_s"]
        theirs = redis_bench(rport, secs, redis_n(60000), "zrange", "s", "0", "-1", "withscores") if have_redis else 0
        row("GET whole multiset, 8 conns (vs ZRANGE WITHSCORES)", ours, theirs, "req/s")

        # 5. HTTP against nginx `return 200`, 1 worker.
        if ensure("wrk", "wrk"):
            nginx_rate = 0
            if ensure("nginx", "nginx-light"):
                nport = free_port()
                ndir = tempfile.mkdtemp(prefix="sortd-nginx-")
                conf = os.path.join(ndir, "nginx.conf")
                with open(conf, "w") as f:
                    f.write(f"""worker_processes 1; daemon off; pid {ndir}/nginx.pid; error_log {ndir}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {ndir}; proxy_temp_path {ndir}; fastcgi_temp_path {ndir};
  uwsgi_temp_path {ndir}; scgi_temp_path {ndir};
  server {{ listen 127.0.0.1:{nport}; location / {{ return 200 "ok"; }} }} }}
""")
                nginx = subprocess.Popen(["nginx", "-c", conf, "-p", ndir],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(nginx)
                wait_port(nport, "nginx")
                nginx_rate = wrk(f"http://127.0.0.1:{nport}/", secs)
            row("HTTP GET /health, wrk -t1 -c8 (vs nginx return 200)", wrk(f"http://127.0.0.1:{http}/health", secs), nginx_rate, "req/s")
            row("HTTP GET /array?format=runs (vs nginx return 200)", wrk(f"http://127.0.0.1:{http}/array?format=runs", secs), nginx_rate, "req/s")

        # 6. Connections: throughput and p99 as they grow.
        scaling = []
        for c in (1, 8, 64, 512):
            clear(frame)
            r = client_bench(frame, secs, "-c", str(c))
            scaling.append(f"| {c} | {r['requests_per_s']:,.0f} | {r['latency_us']['p99']} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    print(f"\n{secs} s per run, one load at a time, 127.0.0.1, this machine's cores shared by client and server\n")
    print("| workload | sortd | peer | ratio |\n|---|---:|---:|---:|")
    print("\n".join(rows))
    print("\n| connections | sortd INSERT req/s | p99 µs |\n|---:|---:|---:|")
    print("\n".join(scaling))


if __name__ == "__main__":
    main()
