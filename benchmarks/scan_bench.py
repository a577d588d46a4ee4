"""Rules-engine cost with every rule loaded: a 2 KB prompt, a 1 MiB prompt, MB/s on 1.5 KB prompts.

Usage: python benchmarks/scan_bench.py [--rules DIR] [--rounds N]
Targets (issue 3 / 9): 2 KB p50 <= 1 ms, 1 MiB <= 100 ms, >= 100 MB/s on 1.5 KB prompts.
Prompts are generated here (ordinary chat text with a code block), never taken from a corpus.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.rules import default_rules_dir, load_rules

WORDS = ("the service returns a list of orders for each customer and we want to group them by "
         "month before rendering a chart please explain why the query is slow and how an index "
         "could help also suggest tests for the edge cases when the list is empty").split()
CODE = "\n```python\nfor order in orders:\n    totals[order.month] += order.amount\n```\n"


def prompt(size: int, seed: int) -> str:
    rnd = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        sentence = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(8, 16))).capitalize()
        sentence += "." if rnd.random() < 0.8 else "?"
        if rnd.random() < 0.05:
            sentence += CODE
        parts.append(sentence)
        length += len(sentence) + 1
    return " ".join(parts)[:size]


def timed(engine: Engine, text: str, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        engine.scan_text(text)
        out.append(time.perf_counter() - t0)
    return sorted(out)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] * 1e3


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default=str(default_rules_dir()))
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args(argv)
    engine = Engine(load_rules(args.rules))
    print(f"rules loaded: {engine.rule_count}")

    two_kb = [prompt(2048, s) for s in range(50)]
    for t in two_kb[:5]:
        engine.scan_text(t)  # warm caches
    samples: list[float] = []
    for i in range(args.rounds):
        t0 = time.perf_counter()
        engine.scan_text(two_kb[i % len(two_kb)])
        samples.append(time.perf_counter() - t0)
    samples.sort()
    print(f"2 KB prompt:   p50 {pct(samples, 0.5):.3f} ms   p99 {pct(samples, 0.99):.3f} ms")

    big = prompt(1 << 20, 7)
    big_t = timed(engine, big, 7)
    print(f"1 MiB prompt:  p50 {pct(big_t, 0.5):.1f} ms   max {big_t[-1] * 1e3:.1f} ms")

    small = [prompt(1536, 1000 + s) for s in range(200)]
    total_bytes = 0
    t0 = time.perf_counter()
    deadline = t0 + 2.0
    n = 0
    while time.perf_counter() < deadline:
        text = small[n % len(small)]
        engine.scan_text(text)
        total_bytes += len(text.encode("utf-8"))
        n += 1
    elapsed = time.perf_counter() - t0
    print(f"1.5 KB prompts: {total_bytes / elapsed / 1e6:.0f} MB/s "
          f"({n / elapsed:,.0f} scans/s, {statistics.fmean([elapsed / n]) * 1e6:.1f} us/scan)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
