#!/usr/bin/env python3
"""End-to-end benchmark: sortd against Redis (and HTTP against nginx) on loopback, one load at a time.

Usage: python3 scripts/e2e_bench.py [--seconds S] [--rounds R]

Builds and starts the release `server` on free loopback ports and drives it with `client bench -t 1`
(one event loop, as redis-benchmark and wrk use);
starts `redis-server` and drives it with `redis-benchmark` on the equivalent work; serves nginx
`return 200` (1 worker, and 2 workers against sortd's two loops) and drives it and sortd's HTTP
with `wrk -t1 -c8`. redis-server, nginx and
wrk are installed with apt-get when missing; a peer that cannot be installed is skipped with a
message. Every server is started and stopped by PID, bound to 127.0.0.1, every run bounded in time.
A third server persists with `--fsync everysec` and is compared with the in-memory one on the
same loads. Every load runs R times, interleaved (sortd, peer, sortd, peer, ...), and the tables
show medians: one table of workload, sortd, peer, ratio; one of throughput and p99 as
connections grow.
"""
import argparse
import csv
import json
import os
import re
import shutil
import socket
import statistics
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
               "-t", "1", "-d", str(seconds), *args], timeout=seconds * 4 + 60)
    return json.loads(out)


def stop(proc, timeout=15):
    """Ends a process this script started: SIGTERM, then SIGKILL if it has not gone in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def clear(frame_port):
    run([os.path.join(BIN, "client"), "--addr", f"127.0.0.1:{frame_port}", "clear"], timeout=30)


def redis_bench(port, seconds_hint, requests, *args, conns=8, p99=False, cpu=None):
    """Requests/s of the last test redis-benchmark ran (and its p99 in µs if `p99`), pinned to
    `cpu` with taskset when given."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    out = run([*pin, "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(conns), "-n",
               str(requests), "--csv", *args], timeout=seconds_hint * 6 + 60)
    rows = [r for r in csv.reader(out.splitlines()) if r and r[0] != "test"]
    rps = float(rows[-1][1])
    return (rps, float(rows[-1][6]) * 1000) if p99 else rps


def wrk(url, seconds):
    out = run(["wrk", "-t1", "-c8", f"-d{seconds}s", url], timeout=seconds + 60)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1))


def median_of(samples):
    return statistics.median(samples) if samples else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per load; medians are shown")
    args = parser.parse_args()
    secs = args.seconds

    subprocess.run(["cargo", "build", "--release", "--bins", "-q"], cwd=ROOT, check=True)
    frame, http = free_port(), free_port()
    procs = []
    results = {}  # row name -> (unit, [ours], [theirs])
    scaling = {}  # connections -> ([ours req/s], [ours p99], [redis req/s], [redis p99])

    def sample(name, unit, ours, theirs):
        entry = results.setdefault(name, (unit, [], []))
        entry[1].append(ours)
        if theirs:
            entry[2].append(theirs)

    pdir = None
    try:
        server = subprocess.Popen([os.path.join(BIN, "server"), "--frame-addr", f"127.0.0.1:{frame}",
                                   "--http-addr", f"127.0.0.1:{http}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(server)
        wait_port(frame, "sortd")
        # Redis and nginx (1 worker) serve from one thread: sortd with one event loop too.
        frame1, http1 = free_port(), free_port()
        procs.append(subprocess.Popen([os.path.join(BIN, "server"), "--frame-addr",
                                       f"127.0.0.1:{frame1}", "--http-addr", f"127.0.0.1:{http1}",
                                       "--threads", "1"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(frame1, "sortd --threads 1")

        have_redis = ensure("redis-server", "redis-server") and ensure("redis-benchmark", "redis-tools")
        rport = free_port()
        if have_redis:
            rdir = tempfile.mkdtemp(prefix="sortd-redis-")
            redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", rdir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(redis)
            wait_port(rport, "redis-server")
        have_wrk = ensure("wrk", "wrk")

        def start_nginx(workers):
            port = free_port()
            ndir = tempfile.mkdtemp(prefix="sortd-nginx-")
            conf = os.path.join(ndir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(f"""worker_processes {workers}; daemon off; pid {ndir}/nginx.pid; error_log {ndir}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {ndir}; proxy_temp_path {ndir}; fastcgi_temp_path {ndir};
  uwsgi_temp_path {ndir}; scgi_temp_path {ndir};
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }} }}
""")
            procs.append(subprocess.Popen(["nginx", "-c", conf, "-p", ndir],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(port, "nginx")
            return port

        nginx_port = nginx2_port = None
        if have_wrk and ensure("nginx", "nginx-light"):
            nginx_port = start_nginx(1)
            nginx2_port = start_nginx(2)

        # The same server persisting with --fsync everysec (two loops), for the cost of the log.
        pdir = tempfile.mkdtemp(prefix="sortd-data-")
        framep, httpp = free_port(), free_port()
        procs.append(subprocess.Popen([os.path.join(BIN, "server"), "--frame-addr",
                                       f"127.0.0.1:{framep}", "--http-addr", f"127.0.0.1:{httpp}",
                                       "--data-dir", pdir, "--fsync", "everysec"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(framep, "sortd --data-dir")

        def redis_n(rate_guess):
            return max(1000, int(rate_guess * secs))

        def redis_or_0(*args, **kw):
            return redis_bench(rport, secs, *args, **kw) if have_redis else 0

        for _ in range(args.rounds):
            # 1. INSERT of 10-20 values in 0..=100 with the sorted reply, 8 connections.
            clear(frame)
            ours = client_bench(frame, secs, "-c", "8")["requests_per_s"]
            sample("INSERT batch + sorted reply, 8 conns (vs EVAL 15×ZINCRBY+ZRANGE)", "req/s", ours,
                   redis_or_0(redis_n(15000), "eval", EVAL_BATCH, "1", "s"))
            ping = redis_or_0(redis_n(130000), "-t", "ping")
            sample("the same (vs Redis PING round trips)", "req/s", ours, ping)
            clear(frame1)
            ours1 = client_bench(frame1, secs, "-c", "8")["requests_per_s"]
            sample("the same, sortd --threads 1 (vs Redis PING round trips)", "req/s", ours1, ping)

            # 2. Pipelined ×16, in values per second.
            clear(frame)
            ours = client_bench(frame, secs, "-c", "8", "-p", "16")["values_per_s"]
            sample("INSERT pipelined ×16, values/s (vs ZADD -P 16)", "values/s", ours,
                   redis_or_0(redis_n(500000), "-P", "16", "-r", "101", "-t", "zadd"))

            # 3. Ack only.
            clear(frame)
            ours = client_bench(frame, secs, "-c", "8", "--mix", "ack=1")["requests_per_s"]
            sample("INSERT ack only, 8 conns (vs EVAL 15×ZINCRBY)", "req/s", ours,
                   redis_or_0(redis_n(25000), "eval", EVAL_ACK, "1", "s"))

            # 4. GET of the whole multiset (<= 101 runs).
            ours = client_bench(frame, secs, "-c", "8", "--mix", "get=1")["requests_per_s"]
            sample("GET whole multiset, 8 conns (vs ZRANGE WITHSCORES)", "req/s", ours,
                   redis_or_0(redis_n(60000), "zrange", "s", "0", "-1", "withscores"))

            # 5. HTTP against nginx `return 200`, 1 worker.
            if have_wrk:
                nginx_rate = wrk(f"http://127.0.0.1:{nginx_port}/", secs) if nginx_port else 0
                sample("HTTP GET /health, wrk -t1 -c8 (vs nginx return 200)", "req/s",
                       wrk(f"http://127.0.0.1:{http}/health", secs), nginx_rate)
                sample("HTTP GET /health, sortd --threads 1 (vs nginx, 1 worker)", "req/s",
                       wrk(f"http://127.0.0.1:{http1}/health", secs), nginx_rate)
                sample("HTTP GET /array?format=runs (vs nginx return 200)", "req/s",
                       wrk(f"http://127.0.0.1:{http}/array?format=runs", secs), nginx_rate)
                sample("HTTP GET /array?format=runs, sortd --threads 1 (vs nginx, 1 worker)",
                       "req/s", wrk(f"http://127.0.0.1:{http1}/array?format=runs", secs),
                       nginx_rate)
                nginx2_rate = wrk(f"http://127.0.0.1:{nginx2_port}/", secs) if nginx2_port else 0
                sample("HTTP GET /health, two loops (vs nginx, 2 workers)", "req/s",
                       wrk(f"http://127.0.0.1:{http}/health", secs), nginx2_rate)

            # 6. Persistence: --fsync everysec against the same server in memory.
            clear(frame)
            clear(framep)
            mem = client_bench(frame, secs, "-c", "8")["requests_per_s"]
            sample("INSERT + sorted reply, --fsync everysec (vs in memory)", "req/s",
                   client_bench(framep, secs, "-c", "8")["requests_per_s"], mem)
            mem = client_bench(frame, secs, "-c", "8", "--mix", "ack=1")["requests_per_s"]
            sample("INSERT ack only, --fsync everysec (vs in memory)", "req/s",
                   client_bench(framep, secs, "-c", "8", "--mix", "ack=1")["requests_per_s"], mem)
            if have_wrk:
                mem = wrk(f"http://127.0.0.1:{http}/health", secs)
                sample("HTTP GET /health, --fsync everysec (vs in memory)", "req/s",
                       wrk(f"http://127.0.0.1:{httpp}/health", secs), mem)

            # 7. Connections: throughput and p99 as they grow, against the same batch on Redis.
            for c in (1, 8, 64, 512):
                clear(frame)
                r = client_bench(frame, secs, "-c", str(c))
                cell = scaling.setdefault(c, ([], [], [], []))
                cell[0].append(r["requests_per_s"])
                cell[1].append(r["latency_us"]["p99"])
                if have_redis:
                    rps, p99 = redis_bench(rport, secs, redis_n(15000), "eval", EVAL_BATCH, "1", "s",
                                           conns=c, p99=True)
                    cell[2].append(rps)
                    cell[3].append(p99)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            stop(p, timeout=10)
        if pdir:
            shutil.rmtree(pdir, ignore_errors=True)

    print(f"\nmedians of {args.rounds} rounds, {secs} s per run, one load at a time, 127.0.0.1, "
          f"this machine's cores shared by client and server; "
          f"`python3 scripts/e2e_bench.py --seconds {secs} --rounds {args.rounds}`\n")
    print("| workload | sortd | peer | ratio | ratios per round |\n|---|---:|---:|---:|---|")
    for name, (unit, ours, theirs) in results.items():
        o, t = median_of(ours), median_of(theirs)
        ratio = f"{o / t:.2f}x" if t else "-"
        each = ", ".join(f"{a / b:.2f}" for a, b in zip(ours, theirs)) if theirs else "-"
        theirs_s = f"{t:,.0f}" if t else "skipped"
        print(f"| {name} | {o:,.0f} {unit} | {theirs_s} | {ratio} | {each} |")
    print("\n| connections | sortd INSERT req/s | sortd p99 µs | p99 / p99 at 8 | "
          "Redis EVAL batch req/s | Redis p99 µs | p99 / p99 at 8 |\n|---:|---:|---:|---:|---:|---:|---:|")
    base = scaling[8]
    for c, (rps, p99, rrps, rp99) in scaling.items():
        ours_growth = median_of(p99) / median_of(base[1])
        theirs_growth = f"{median_of(rp99) / median_of(base[3]):.1f}x" if rp99 else "-"
        print(f"| {c} | {median_of(rps):,.0f} | {median_of(p99):,.0f} | {ours_growth:.1f}x | "
              f"{median_of(rrps):,.0f} | {median_of(rp99):,.0f} | {theirs_growth} |")


if __name__ == "__main__":
    main()
