"""What the bench sends: a file of request bodies, one JSON body per line, and whose they are.

Why: a body that repeats lets the firewall answer every request but the first from its verdict
cache, while real chat traffic carries a user text nobody has seen. The real-traffic file keeps
the payload's system prompt and other fields and puts one text of a labelled JSONL in the user
turn, ending in a placeholder that the load generator (assets/traffic.lua, assets/loadgen.py)
replaces with a reference of its own per request: so every request's text is new, however few
texts the file holds. The fixed-body file is the payload alone, for the figure a cache can serve.

Client identities follow one scheme in both load generators: request k of a run comes from an
address, API key, user and session of its own, so a refusal never turns into sanctions that
make later requests cheap. The address is an IPv6 one with its own /64 (an IP-range block takes
a /24 or a /64, so no two requests share one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

REF_PLACEHOLDER = "@@BENCH_REF@@"
REF_SUFFIX = f" (ref {REF_PLACEHOLDER})"
SYSTEM_ROLES = ("system", "developer")
DEFAULT_TEXTS = Path(__file__).resolve().parents[1] / "examples" / "sample.jsonl"


@dataclass(frozen=True)
class Texts:
    """The user texts of a labelled JSONL, with how many are labelled attacks."""

    path: Path
    texts: tuple[str, ...]
    attacks: int

    @property
    def chars(self) -> tuple[int, int]:
        lengths = [len(t) for t in self.texts]
        return min(lengths), max(lengths)


def read_texts(path: Path, labels: set[str] | None = None) -> Texts:
    """Every row's text (only rows with one of `labels`, when given); a bad row raises ValueError
    naming the file and line."""
    from llm_firewall.score.corpus import read_jsonl  # here: the load generator imports this module too

    rows = [r for r in read_jsonl(path) if r.text.strip() and (labels is None or r.label in labels)]
    if not rows:
        raise ValueError(f"{path}: no rows with a 'text'" + (f" labelled {', '.join(sorted(labels))}" if labels else ""))  # noqa: E501
    return Texts(path, tuple(r.text for r in rows), sum(r.is_attack for r in rows))


def _chat(payload: bytes) -> dict:
    doc = json.loads(payload)
    if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
        raise ValueError("the payload has no 'messages' list (a chat completions request is needed)")
    return doc


def _line(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def real_bodies(payload: bytes, texts: Texts) -> list[bytes]:
    """One body per text: the payload's system messages and fields, the text as the user turn."""
    doc = _chat(payload)
    system = [m for m in doc["messages"] if isinstance(m, dict) and m.get("role") in SYSTEM_ROLES]
    return [_line({**doc, "messages": [*system, {"role": "user", "content": text + REF_SUFFIX}]})
            for text in texts.texts]


def fixed_bodies(payload: bytes) -> list[bytes]:
    """The payload alone, on one line: the same body every request."""
    return [_line(_chat(payload))]


def write_bodies(path: Path, bodies: list[bytes]) -> Path:
    path.write_bytes(b"".join(body + b"\n" for body in bodies))
    return path


def identity(run: int, k: int) -> dict[str, str]:
    """Request k's identity headers in run `run` (0-65535): what assets/traffic.lua sends too."""
    key = f"sk-bench-{run}-{k:08d}"
    return {"Authorization": f"Bearer {key}",
            "X-Forwarded-For": f"fd00:{run:x}:{k >> 16 & 0xffff:x}:{k & 0xffff:x}::1",
            "X-User-ID": f"bench-user-{run}-{k}", "X-Session-ID": f"bench-session-{run}-{k}"}
