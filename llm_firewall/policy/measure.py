"""Prints each preset's refusal rates on a labelled corpus: `python -m llm_firewall.policy.measure FILE`.

The presets trade protection against friction differently; this measures the friction (benign
texts refused) and the protection (attacks refused) of each, with the rules and scorer in the
tree. Texts are read and scanned only; nothing from the corpus is written anywhere.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import orjson

from llm_firewall.domain import Identity
from llm_firewall.policy.decide import decide
from llm_firewall.policy.model import list_presets, load_policy


def _scanner(policy):
    """The inspector (rules + FP scorer) when present, else rules alone (fp counted as 0.0)."""
    try:
        from llm_firewall.inspector import Inspector

        inspector = Inspector.load(None, overrides=policy.rule_overrides)
        return inspector.inspect_text, "rules+scorer"
    except ImportError:
        from llm_firewall.detect.engine import Engine
        from llm_firewall.detect.rules import default_rules_dir, load_rules

        engine = Engine(load_rules(default_rules_dir()), overrides=policy.rule_overrides)
        return (lambda text, role="user": engine.scan_text(text, role)), "rules only"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--policy", action="append", help="preset name or path (default: every preset)")
    args = parser.parse_args(argv)
    rows = [orjson.loads(line) for line in args.corpus.read_bytes().splitlines() if line.strip()]
    identity = Identity(ip="192.0.2.1", user="measure")
    print("| policy | scanner | benign refused | attacks refused |\n|---|---|---|---|")
    for name in args.policy or list_presets():
        policy = load_policy(name)
        scan, how = _scanner(policy)
        total, refused = Counter(), Counter()
        for row in rows:
            label = row.get("label", "benign")
            decision = decide(policy, scan(row["text"], row.get("role", "user")), identity)
            total[label] += 1
            refused[label] += bool(decision.blocked or decision.would_block)
        share = lambda lab: f"{refused[lab] / total[lab]:.2%} ({refused[lab]}/{total[lab]})" if total[lab] else "-"  # noqa: E731
        print(f"| {policy.name} | {how} | {share('benign')} | {share('attack')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
