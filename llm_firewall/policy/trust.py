"""Which request texts a policy trusts: the operator's own prompts, named by their SHA-256.

Why by digest and never by role: a client can write a system or developer message as easily as a
user one, so a role proves nothing. Only the exact text the operator listed is let through
uninspected; any other text in that role, even one character off, is inspected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from llm_firewall.domain import TextItem

# Roles an operator's own prompt stands in; a digest in any other role trusts nothing.
TRUSTABLE_ROLES = frozenset({"system", "developer", "instructions"})


def prompt_digest(text: str) -> str:
    """The digest a policy lists: SHA-256 of the text's UTF-8 bytes, lower-case hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def untrusted(items: Iterable[TextItem], trusted: frozenset[str]) -> list[TextItem]:
    """The texts still to inspect once the policy's trusted prompts are set aside."""
    if not trusted:
        return list(items)
    return [item for item in items
            if item.role not in TRUSTABLE_ROLES or prompt_digest(item.text) not in trusted]
