"""What inspecting the system role costs and gains, under the production policy.

Prints, for a labelled corpus with a `role` column (../shared/datasets/train_extra.jsonl): the
share of benign system prompts refused when read in the system role and when read as user text,
and the share of the corpus's user-role attacks refused when placed in the system role and in the
user role.

    python benchmarks/system_role_eval.py CORPUS.jsonl
"""

from __future__ import annotations

import sys

from llm_firewall.domain import Identity
from llm_firewall.inspector import Inspector
from llm_firewall.policy.decide import decide
from llm_firewall.policy.model import load_policy
from llm_firewall.score.corpus import Example, read_jsonl

WHO = Identity(ip="192.0.2.1")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    corpus = sys.argv[1]
    policy = load_policy("production")
    inspector = Inspector.load(None, overrides=dict(policy.rule_overrides))
    rows = list(read_jsonl(corpus))

    def refused(examples: list[Example], role: str) -> str:
        n = sum(decide(policy, inspector.inspect_text(ex.text, role), WHO).blocked for ex in examples)
        return f"{n}/{len(examples)} = {n / max(1, len(examples)):.1%}"

    system = [ex for ex in rows if ex.role == "system" and not ex.is_attack]
    attacks = [ex for ex in rows if ex.role == "user" and ex.is_attack]
    print(f"benign system prompts refused, read in the system role: {refused(system, 'system')}")
    print(f"benign system prompts refused, read as user text:       {refused(system, 'user')}")
    print(f"user-role attacks refused, placed in the system role:  {refused(attacks, 'system')}")
    print(f"user-role attacks refused, in the user role:           {refused(attacks, 'user')}")


if __name__ == "__main__":
    main()
