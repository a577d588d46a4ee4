"""How many patterns to fold into each RE2 set: unseen text against the bench prompt.

Usage: python benchmarks/set_groups.py --corpus DEV.jsonl [--groups 24,48,87,100,200] [--seed 7]

For each group size it compiles the request direction's rules (loosened patterns plus the
normaliser's triggers, as the engine does) into sets of that many patterns, then prints:
- the number of sets;
- "unseen": MB/s of the set passes over one half of the corpus (shuffled with --seed), after
  three passes over the other half have built the DFAs' states: new text from the same kind of
  traffic, as a long-running server sees it;
- "bench prompt": µs of the set passes over the bench's 1.5 KB prompt, in a loop (its states
  all built): what `llm-firewall bench` calls the rules engine's speed.
Fewer sets cut the fixed cost of a pass on familiar text and blow up the states on unseen text;
the engine's `SET_GROUP` is chosen from this table. The corpus is read at run time only.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.*

from benchmarks.bench import benchmark_prompt, timed_loop
from llm_firewall.detect.engine import SET_GROUP, _Compiled
from llm_firewall.detect.rules import default_rules_dir, load_rules


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="labelled JSONL with a 'text' field per line")
    ap.add_argument("--groups", default=f"24,{SET_GROUP},87,100,200", help="patterns per set, comma-separated")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rules", default=str(default_rules_dir()))
    args = ap.parse_args(argv)
    with open(args.corpus, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"].encode() for line in fh if line.strip()]
    random.Random(args.seed).shuffle(texts)
    warm, unseen = texts[: len(texts) // 2], texts[len(texts) // 2:]
    unseen_bytes = sum(map(len, unseen)) or 1
    rules = [r for r in load_rules(args.rules).rules if r.applies("request")]
    prompt = benchmark_prompt(1536).encode()
    patterns = sum(len(r.any) for r in rules)
    print(f"{len(texts)} corpus texts ({unseen_bytes / 1e6:.2f} MB unseen); {len(rules)} request rules, "
          f"{patterns} patterns")
    print(f"{'patterns a set':>14} {'sets':>5} {'unseen MB/s':>12} {'bench prompt us':>16}")
    for group in (int(g) for g in args.groups.split(",")):
        comp = _Compiled(rules, group)
        for _ in range(3):
            for text in warm:
                comp.hits(text)
        t0 = time.perf_counter()
        for text in unseen:
            comp.hits(text)
        seconds = time.perf_counter() - t0
        bench_us = statistics.median(timed_loop(lambda: comp.hits(prompt), 0.5)) * 1e6  # noqa: B023 - called within this iteration
        print(f"{group:>14} {len(comp.groups):>5} {unseen_bytes / seconds / 1e6:>12.1f} {bench_us:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
