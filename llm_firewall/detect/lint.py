"""`llm-firewall rules lint|test [DIR]`: check rule files before they reach a running proxy.

`lint` validates every file (schema, patterns, each rule's own tests) and reports every error;
`test` also runs each rule's examples through the full engine (the single set pass included),
which catches a rule that works alone but not in the compiled set.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.rules import RuleSet, default_rules_dir, parse_rules

USAGE = "usage: llm-firewall rules lint|test [DIR]"


HELP = f"""{USAGE}

  lint [DIR]   validate every rule file in DIR (default: the shipped rules): schema, patterns,
               and each rule's own examples; prints every error with its file and field
  test [DIR]   lint, then run every rule's examples through the compiled engine
Exit status: 0 when no problem was found, 1 otherwise, 2 on a usage error."""


def main(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        print(HELP)
        return 0
    if not argv or argv[0] not in ("lint", "test") or len(argv) > 2:
        print(USAGE, file=sys.stderr)
        return 2
    command = argv[0]
    target = Path(argv[1]) if len(argv) == 2 else default_rules_dir()
    rules, errors = parse_rules(target)
    per_file = Counter(r.file for r in rules)
    bad_files = Counter(e.file for e in errors)
    for file in sorted(set(per_file) | set(bad_files)):
        status = "ok" if not bad_files[file] else f"{bad_files[file]} error(s)"
        print(f"{file}: {per_file[file]} rule(s), {status}")
    for err in errors:
        print(f"error: {err}")
    failures: list[str] = []
    if command == "test" and rules:
        failures = Engine(RuleSet(tuple(rules))).run_tests()
        for failure in failures:
            print(f"fail: {failure}")
        n_tests = sum(len(r.tests_match) + len(r.tests_no_match) for r in rules)
        print(f"{n_tests - len(failures)}/{n_tests} rule examples pass through the engine")
    total = len(errors) + len(failures)
    print(f"{len(rules)} rule(s) loaded, {total} problem(s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
