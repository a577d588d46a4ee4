"""Labelled corpus reading and the one train/held-out split every script and `eval` share.

The split is a pure function of the text (CRC-32 of its UTF-8 bytes), so training scripts and
`llm-firewall eval --split heldout` agree on it without sharing any state, and it stays stable
as the corpus grows.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HELDOUT_BUCKETS = 5
# Attack categories the learned model is for (malicious_input is left to the rules).
PROMPT_ATTACK_TOPS = ("prompt_injection", "jailbreak", "data_exfiltration", "indirect_injection_payload",
                      "indirect_injection", "obfuscated_injection")  # one bucket in five (20 %) is never used for training  # noqa: E501


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str  # "attack" | "benign"
    category: str  # "top/sub[/...]"
    source: str = ""
    role: str = "user"  # where the text would stand in a request (user, system, tool)

    @property
    def is_attack(self) -> bool:
        return self.label == "attack"

    @property
    def top(self) -> str:
        return self.category.split("/", 1)[0]

    @property
    def sub(self) -> str:
        return "/".join(self.category.split("/")[:2])


def text_bucket(text: str, buckets: int = HELDOUT_BUCKETS) -> int:
    """Stable bucket of a text in [0, buckets)."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % buckets


def is_heldout(text: str) -> bool:
    """True for texts that no training script may see (bucket 0 of 5)."""
    return text_bucket(text) == 0


def fold_of(text: str, folds: int = 5) -> int:
    """Fold index for k-fold runs over the training part (independent of the held-out bucket)."""
    return (zlib.crc32(b"fold:" + text.encode("utf-8", "surrogatepass")) // HELDOUT_BUCKETS) % folds


def read_jsonl(path: str | Path) -> Iterator[Example]:
    """Yield examples from a JSON-lines corpus; a bad line raises naming the file and line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield Example(
                    text=str(row["text"]),
                    label=str(row.get("label", "benign")),
                    category=str(row.get("category") or row.get("label") or "uncategorised"),
                    source=str(row.get("source", "")),
                    role=str(row.get("role") or "user"),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a corpus row ({exc})") from exc
