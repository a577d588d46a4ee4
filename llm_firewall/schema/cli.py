"""`llm-firewall schema rules|policy`: the JSON Schema of rule or policy files, for editors.

The schemas are generated from the same typed models the loaders validate with, so an editor
(through the `# yaml-language-server: $schema=...` comment at the top of each shipped file)
completes and checks exactly what the firewall accepts. Some checks need more than a schema
(patterns that compile, a rule's own examples, `extends`, `${ENV}`): `llm-firewall rules lint`
and loading the policy make those.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

USAGE = "usage: llm-firewall schema rules|policy"


def _rules() -> dict[str, Any]:
    from llm_firewall.detect.rule_spec import json_schema
    return json_schema()


def _policy() -> dict[str, Any]:
    from llm_firewall.policy.spec import json_schema
    return json_schema()


SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {"rules": _rules, "policy": _policy}


def render(kind: str) -> str:
    """The schema as written to stdout (and shipped in schemas/<kind>.schema.json)."""
    return json.dumps(SCHEMAS[kind](), indent=2) + "\n"


def main(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        print(f"{USAGE}\n\n  Print the JSON Schema of rule files or policy files on stdout.")
        return 0
    if len(argv) != 1 or argv[0] not in SCHEMAS:
        print(USAGE, file=sys.stderr)
        return 2
    sys.stdout.write(render(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
