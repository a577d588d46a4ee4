"""The few data types every stage of the firewall passes along.

Kept free of aiohttp and of any stage's internals so that the pure parts (normalise, rules,
scorer, decide) and the server agree on one vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES, start=1)}

THREATS: tuple[str, ...] = (
    "prompt_injection",
    "data_exfiltration",
    "system_manipulation",
    "privacy_violation",
    "malicious_input",
    "secret_leakage",
    "system_prompt_leakage",
    "rate_limit_abuse",
)

Direction = Literal["request", "response"]


@dataclass(frozen=True, slots=True)
class TextItem:
    """One text the model would read (or wrote), with the role it came from.

    `role` is one of: user, system, developer, assistant, tool (tool results), tool_call
    (arguments the model produced), tool_description, prompt (legacy completions), input and
    instructions (Responses API), embedding (embeddings input), response (answer text).
    `path` says where in the JSON body it stood, e.g. ``messages[2].content[0].text``.
    """

    text: str
    role: str
    path: str


@dataclass(slots=True)
class Finding:
    """A rule (or model) that fired on one text, before and after false-positive scoring."""

    rule_id: str
    title: str
    threat: str
    severity: str
    role: str = "user"
    path: str = ""
    category: str | None = None  # sub-type, e.g. sql_injection, xss, path_traversal
    transforms: tuple[str, ...] = ()  # normalisation steps that revealed it ("base64", ...)
    status: str = "stable"  # experimental rules are logged, never enforced
    excerpt: str = ""  # short, secret-redacted snippet of what matched
    span: tuple[int, int] | None = None  # offsets in the text that was scanned
    fp_probability: float | None = None  # 0..1, set by the scorer
    fp_explanation: list[tuple[str, float]] = field(default_factory=list)
    recommendation: str | None = None  # block | investigate | monitor

    @property
    def rank(self) -> int:
        return SEVERITY_RANK.get(self.severity, 0)

    def to_dict(self) -> dict[str, object]:
        return {
            "rule_id": self.rule_id,
            "title": self.title,
            "threat": self.threat,
            "severity": self.severity,
            "category": self.category,
            "role": self.role,
            "path": self.path,
            "transforms": list(self.transforms),
            "status": self.status,
            "excerpt": self.excerpt,
            "fp_probability": self.fp_probability,
            "fp_explanation": [[name, round(weight, 4)] for name, weight in self.fp_explanation],
            "recommendation": self.recommendation,
        }


@dataclass(frozen=True, slots=True)
class Identity:
    """Who sent a request. The API key is kept only as a short hash, never in clear."""

    ip: str
    api_key_hash: str | None = None
    user: str | None = None
    session: str | None = None
    agent: str | None = None

    def keys(self) -> dict[str, str]:
        """The sanction/rate-limit subjects this identity can be addressed by."""
        out = {"ip": self.ip}
        if self.api_key_hash:
            out["key"] = self.api_key_hash
        if self.user:
            out["user"] = self.user
        if self.session:
            out["session"] = self.session
        if self.agent:
            out["agent"] = self.agent
        return out
