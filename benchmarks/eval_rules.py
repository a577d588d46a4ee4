"""Per-category refusal shares of the rules alone on a labelled JSONL corpus.

Usage: python benchmarks/eval_rules.py [CORPUS] [--rules DIR] [--block-at high] [--hits N]
Prints, per "top/sub" category, how many texts a request would refuse (a finding at or above
the block severity, stable rules only), and optionally the rules that fire most on benign texts.
Then the scan speed: per text on the first pass (every text new to the rules' DFAs), and MB/s on
that pass and on a second one over the same texts (DFA states built). The corpus is read, never
copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.rules import default_rules_dir, load_rules
from llm_firewall.domain import SEVERITY_RANK

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dev.jsonl"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    ap.add_argument("--rules", default=str(default_rules_dir()))
    ap.add_argument("--block-at", default="high", choices=list(SEVERITY_RANK))
    ap.add_argument("--hits", type=int, default=0, help="show the N noisiest rules on benign texts")
    ap.add_argument("--misses", default="", help="print missed attacks of categories with this prefix")
    args = ap.parse_args(argv)
    engine = Engine(load_rules(args.rules))
    floor = SEVERITY_RANK[args.block_at]
    stats: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    benign_hits: Counter[str] = Counter()
    elapsed: list[float] = []
    texts: list[str] = []
    with open(args.corpus, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            cat = "/".join(row["category"].split("/")[:2])
            texts.append(row["text"])
            t0 = time.perf_counter()
            findings = engine.scan_text(row["text"])
            elapsed.append(time.perf_counter() - t0)
            blocking = [f for f in findings if f.rank >= floor and f.status == "stable"]
            entry = stats[(row["label"], cat)]
            entry[0] += 1
            entry[1] += bool(blocking)
            if row["label"] == "benign":
                benign_hits.update(f.rule_id for f in blocking)
            elif args.misses and cat.startswith(args.misses) and not blocking:
                print("MISS", cat, repr(row["text"][:160]))
    print(f"{'label':7} {'category':55} {'n':>5} {'refused':>8}")
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    tops: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (label, cat), (n, hit) in sorted(stats.items()):
        print(f"{label:7} {cat:55} {n:5d} {100 * hit / n:7.1f}%")
        totals[label][0] += n
        totals[label][1] += hit
        top = tops[(label, cat.split("/")[0])]
        top[0] += n
        top[1] += hit
    print()
    for (label, top), (n, hit) in sorted(tops.items()):
        print(f"{label:7} {top + '/*':55} {n:5d} {100 * hit / n:7.1f}%")
    for label, (n, hit) in sorted(totals.items()):
        print(f"{label:7} {'ALL':55} {n:5d} {100 * hit / n:7.1f}%")
    mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
    first = sum(elapsed)
    t0 = time.perf_counter()
    for text in texts:
        engine.scan_text(text)
    second = time.perf_counter() - t0
    elapsed.sort()
    print(f"\nscan p50 {elapsed[len(elapsed) // 2] * 1e3:.3f} ms, "
          f"p99 {elapsed[int(len(elapsed) * 0.99)] * 1e3:.3f} ms over {len(elapsed)} texts "
          f"({mb:.2f} MB); {mb / first:.1f} MB/s on the first pass, {mb / second:.1f} MB/s on the second")
    if args.hits:
        print("\nrules refusing benign texts:", benign_hits.most_common(args.hits))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
