#!/usr/bin/env python3
"""Print the median of every criterion benchmark under target/criterion as a
Markdown table (criterion's own summary line shows the mean's interval).

usage: python3 benches/criterion_medians.py [TARGET_DIR]
"""
import json
import os
import sys

root = os.path.join(sys.argv[1] if len(sys.argv) > 1 else "target", "criterion")


def fmt(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


rows = []
for dirpath, dirnames, filenames in os.walk(root):
    if os.path.basename(dirpath) == "new" and "estimates.json" in filenames:
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            name = json.load(f)["full_id"]
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)["median"]
        ci = est["confidence_interval"]
        rows.append((name, est["point_estimate"], ci["lower_bound"], ci["upper_bound"]))
print("| benchmark | median | 95% interval of the median |")
print("|---|---:|---|")
for name, m, lo, hi in sorted(rows):
    print(f"| {name} | {fmt(m)} | {fmt(lo)} – {fmt(hi)} |")
