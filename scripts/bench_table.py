#!/usr/bin/env python3
"""Prints criterion results as a Markdown table of throughput ratios against a baseline.

Usage: python3 scripts/bench_table.py [GROUP_PREFIX] [--baseline NAME]

Reads target/criterion/**/new/{benchmark,estimates}.json (written by `cargo bench`), so run
it after the benchmark whose figures you want. A ratio above 1 means faster than the baseline
measured in the same run; the baseline's own column shows its absolute rate for reference.
"""
import argparse
import json
import pathlib
import sys

parser = argparse.ArgumentParser()
parser.add_argument("prefix", nargs="?", default="")
parser.add_argument("--baseline", default="Mutex<BTreeMap>")
parser.add_argument("--root", default="target/criterion")
args = parser.parse_args()

rows = {}  # (group, value) -> {function: mean ns}
functions = []
for bench in sorted(pathlib.Path(args.root).glob("**/new/benchmark.json")):
    meta = json.loads(bench.read_text())
    if not meta["group_id"].startswith(args.prefix):
        continue
    est = json.loads((bench.parent / "estimates.json").read_text())
    key = (meta["group_id"], meta.get("value_str") or "")
    rows.setdefault(key, {})[meta["function_id"]] = (est["mean"]["point_estimate"], meta.get("throughput"))
    if meta["function_id"] not in functions:
        functions.append(meta["function_id"])

if not rows:
    sys.exit(f"no criterion results under {args.root} for prefix {args.prefix!r}; run cargo bench first")

others = [f for f in functions if f != args.baseline]
print("| workload | threads | " + " | ".join(others) + f" | {args.baseline} |")
print("|---|---|" + "---:|" * (len(others) + 1))
for (group, value), results in sorted(rows.items(), key=lambda kv: (kv[0][0], int(kv[0][1]) if kv[0][1].isdigit() else kv[0][1])):
    base = results.get(args.baseline)
    cells = []
    for f in others:
        if f in results and base:
            cells.append(f"{base[0] / results[f][0]:.2f}x")
        else:
            cells.append("-")
    if base:
        tp = base[1] or {}
        n = tp.get("Elements") or tp.get("Bytes")
        unit = "values/s" if "Elements" in tp else "B/s"
        cells.append(f"{n / base[0] * 1e9 / 1e6:.2f} M{unit}" if n else f"{base[0]:.0f} ns")
    else:
        cells.append("-")
    print(f"| {group} | {value} | " + " | ".join(cells) + " |")
