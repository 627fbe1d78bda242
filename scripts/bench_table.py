#!/usr/bin/env python3
"""Prints criterion results as a Markdown table of throughput ratios against a baseline.

Usage:
    python3 scripts/bench_table.py [GROUP_PREFIX] [--baseline NAME] [--rounds r1,r2,r3]

Without --rounds it reads the last run (target/criterion/**/new/). With --rounds it reads the
runs saved by `cargo bench --bench multiset -- --save-baseline r1` (and r2, r3...), takes for
each contender the median over the rounds of its mean time, and prints ratios of those
medians; the baseline's column gives its median absolute rate. Running the rounds one after
another interleaves the contenders at the granularity of a whole suite.

A ratio above 1 means faster than the baseline measured in the same run(s).
"""
import argparse
import json
import pathlib
import statistics
import sys

parser = argparse.ArgumentParser()
parser.add_argument("prefix", nargs="?", default="")
parser.add_argument("--baseline", default="Mutex<BTreeMap>")
parser.add_argument("--root", default="target/criterion")
parser.add_argument("--rounds", default="new", help="comma-separated saved baselines")
args = parser.parse_args()
rounds = args.rounds.split(",")

rows = {}  # (group, value) -> {function: ([mean ns per round], throughput)}
functions = []
for bench in sorted(pathlib.Path(args.root).glob(f"**/{rounds[0]}/benchmark.json")):
    meta = json.loads(bench.read_text())
    if not meta["group_id"].startswith(args.prefix):
        continue
    means = []
    for r in rounds:
        est = bench.parent.parent / r / "estimates.json"
        if est.exists():
            means.append(json.loads(est.read_text())["mean"]["point_estimate"])
    if len(means) != len(rounds):
        continue
    key = (meta["group_id"], meta.get("value_str") or "")
    rows.setdefault(key, {})[meta["function_id"]] = (means, meta.get("throughput"))
    if meta["function_id"] not in functions:
        functions.append(meta["function_id"])

if not rows:
    sys.exit(f"no criterion results under {args.root} for prefix {args.prefix!r} and rounds {rounds}; run cargo bench first")

others = [f for f in functions if f != args.baseline]
print("| workload | threads | " + " | ".join(others) + f" | {args.baseline} |")
print("|---|---|" + "---:|" * (len(others) + 1))
for (group, value), results in sorted(rows.items(), key=lambda kv: (kv[0][0], int(kv[0][1]) if kv[0][1].isdigit() else kv[0][1])):
    base = results.get(args.baseline)
    cells = []
    for f in others:
        if f in results and base:
            cells.append(f"{statistics.median(base[0]) / statistics.median(results[f][0]):.2f}x")
        else:
            cells.append("-")
    if base:
        tp = base[1] or {}
        n = tp.get("Elements") or tp.get("Bytes")
        unit = "values/s" if "Elements" in tp else "B/s"
        median = statistics.median(base[0])
        cells.append(f"{n / median * 1e9 / 1e6:.2f} M{unit}" if n else f"{median:.0f} ns")
    else:
        cells.append("-")
    print(f"| {group} | {value} | " + " | ".join(cells) + " |")
