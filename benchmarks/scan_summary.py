"""Refusal shares per label, source and category from `llm-firewall scan --jsonl` output.

Usage: llm-firewall scan --jsonl CORPUS.jsonl > out.jsonl
       python benchmarks/scan_summary.py out.jsonl [--rules-only] [--noisy N]
Reads the scan's own lines (the corpus fields plus `blocked` and `threats`), so the figures are
the production decision, role included. `--rules-only` counts a text as refused only when a
rule (not the learned model, ML-*) raised a blocking-grade finding, i.e. high or critical
severity; `--noisy N` lists the N rules that fire most on benign texts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict

BLOCKING = ("high", "critical")


def refused(row: dict, rules_only: bool) -> bool:
    if not rules_only:
        return bool(row["blocked"])
    return any(t["severity"] in BLOCKING and not t["rule_id"].startswith("ML-")
               for t in row["threats"])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scan_output")
    ap.add_argument("--rules-only", action="store_true")
    ap.add_argument("--noisy", type=int, default=0)
    args = ap.parse_args(argv)
    groups: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    noisy: Counter[str] = Counter()
    with open(args.scan_output, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            hit = refused(row, args.rules_only)
            label = row.get("label", "?")
            keys = [("ALL", label), (f"source {row.get('source', '?')}", label),
                    (f"category {row.get('category', '?').split('/')[0]}", label)]
            for key in keys:
                groups[key][0] += 1
                groups[key][1] += hit
            if label == "benign" and hit:
                noisy.update({t["rule_id"] for t in row["threats"]})
    print(f"{'group':60} {'label':7} {'n':>6} {'refused':>8}")
    for (name, label), (n, hit) in sorted(groups.items(), key=lambda kv: (kv[0][0] != "ALL", kv[0])):
        print(f"{name:60} {label:7} {n:6d} {100 * hit / n:7.2f}%")
    for rule, n in noisy.most_common(args.noisy):
        print(f"noisy {rule}: {n} benign texts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
