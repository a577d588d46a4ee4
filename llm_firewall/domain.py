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

# The forwarding headers a deployment may name as the one it believes from trusted proxies
# (LLM_FIREWALL_FORWARDED_HEADER, a policy's identity.forwarded_header); lower case.
FORWARDED_HEADERS: tuple[str, ...] = ("x-forwarded-for", "forwarded", "x-real-ip")


@dataclass(frozen=True, slots=True)
class TextItem:
    """One text the model would read (or wrote), with the role it came from.

    `role` is one of: user, system, developer, assistant, tool (tool results), tool_call
    (arguments the model produced), tool_description, schema (a tool's parameters or a response
    format, read whole), prompt (legacy completions), input and
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
    """Who sent a request. The API key is kept only as a short hash, never in clear.

    `scope` is what the client cannot choose: its API key's hash, else its address (None for
    identities the firewall makes up itself, e.g. the scenario buttons'). A user, session or
    agent id the client merely names is held *scoped* to it, ``bob@203.0.113.9`` or
    ``bob@key:1a2b…``, so a sanction on it never reaches the real bob elsewhere; `user_bound`
    marks a user id vouched for by a trusted gateway, held alone."""

    ip: str
    api_key_hash: str | None = None
    user: str | None = None
    session: str | None = None
    agent: str | None = None
    scope: str | None = None
    user_bound: bool = False
    # The upstream has accepted this client's own API key before: a real account, not one made up
    # for the occasion. Sanctions others earn on the shared address do not reach it.
    key_proven: bool = False

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

    def anchor_for(self, kind: str) -> str | None:
        """``*@<scope>``: every user (session, agent) the client can name from its scope, when
        ids of `kind` are scoped. A sanction on a scoped id is also recorded on it, so naming
        another id (or none) never escapes the sanction."""
        if self.scope is None or kind not in ("session", "user", "agent") or (kind == "user" and self.user_bound):
            return None
        return f"*@{self.scope}"

    def address_anchor_for(self, kind: str) -> str | None:
        """``*@<address>`` when ids of `kind` are scoped to an API key: the client's offences
        count against its address too, so rotating keys (or inventing them) does not shed them."""
        if self.anchor_for(kind) is None or self.scope == self.ip or self.key_proven:
            return None
        return f"*@{self.ip}"

    def sanction_keys(self) -> list[tuple[str, str]]:
        """(kind, key) pairs a sanction on this identity may be stored under, in checking order
        (the stores' lookup): ip, session, user, agent, key, each scoped id with its anchor and,
        under a key, the address's anchor."""
        out = [("ip", self.ip)]
        for kind, value in (("session", self.session), ("user", self.user), ("agent", self.agent)):
            if value:
                out.append((kind, value))
            anchor = self.anchor_for(kind)
            if anchor is not None:
                out.append((kind, anchor))
                address = self.address_anchor_for(kind)
                if address is not None:
                    out.append((kind, address))
        if self.api_key_hash:
            out.append(("key", self.api_key_hash))
        return out
