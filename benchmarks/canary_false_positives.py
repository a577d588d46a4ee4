"""How often the canary matcher fires on answers that hold no canary: its false-positive rate.

Usage: python benchmarks/canary_false_positives.py [--canaries 20] [--corpus DIR] [--hex-mb 4]
Reads the benign texts of the labelled corpora (dev.jsonl, train_extra.jsonl: everyday
requests, documents, command pages, API responses, 40 languages) at run time, and checks each
against `--canaries` random canaries in every form `detect/canary.py` knows, the halves of the
random part included. Then the same over `--hex-mb` MB of random hex (commit ids, hashes: the
text a 32-bit half is likeliest to turn up in by chance). Prints matches per canary and per
MB of text; nothing is copied from the corpora.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

import orjson

from llm_firewall.detect.canary import canary_matcher

HERE = Path(__file__).resolve()
CANDIDATES = [HERE.parents[2] / "shared" / "datasets", HERE.parents[3] / "shared" / "datasets"]


def benign_texts(corpus: Path) -> list[str]:
    texts = []
    for name in ("dev.jsonl", "train_extra.jsonl"):
        path = corpus / name
        if not path.exists():
            continue
        for line in path.read_bytes().splitlines():
            row = orjson.loads(line)
            if row.get("label") == "benign" and isinstance(row.get("text"), str):
                texts.append(row["text"])
    return texts


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canaries", type=int, default=20)
    ap.add_argument("--corpus", type=Path, default=next((p for p in CANDIDATES if p.is_dir()), CANDIDATES[0]))
    ap.add_argument("--hex-mb", type=float, default=4.0)
    args = ap.parse_args(argv)
    texts = benign_texts(args.corpus)
    if not texts:
        print(f"no benign texts under {args.corpus} (dev.jsonl / train_extra.jsonl)", file=sys.stderr)
        return 1
    chars = sum(map(len, texts))
    hex_text = os.urandom(int(args.hex_mb * (1 << 20)) // 2).hex()
    hex_lines = [hex_text[i:i + 4096] for i in range(0, len(hex_text), 4096)]
    hits = hex_hits = 0
    started = time.perf_counter()
    for _ in range(args.canaries):
        matcher = canary_matcher(f"cnry-{secrets.token_hex(8)}")
        hits += sum(1 for text in texts if matcher.found(text))
        hex_hits += sum(1 for line in hex_lines if matcher.found(line))
    took = time.perf_counter() - started
    print(f"benign corpus: {len(texts):,} texts, {chars / 1e6:.1f} M characters, {args.canaries} random canaries")
    print(f"  texts matched: {hits} of {len(texts) * args.canaries:,} checks "
          f"({hits / (len(texts) * args.canaries):.2e} per text per canary)")
    print(f"random hex: {len(hex_text) / 1e6:.1f} M characters: {hex_hits} matches over {args.canaries} canaries "
          f"(a 32-bit half expects ~{2 * len(hex_text) * args.canaries / 2**32:.3f})")
    print(f"scan speed: {args.canaries * (chars + len(hex_text)) / took / 1e6:.0f} M characters/s "
          f"(compiles included)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
