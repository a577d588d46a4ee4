"""What a loaded policy is: frozen dataclasses the proxy, the SOC and `decide` read.

A policy says what the firewall does about each class of finding. Files are read and validated
by `policy.model.load_policy` (through the typed models of `policy.spec`); nothing here parses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Mapping

from pydantic import model_validator

from llm_firewall.durations import DEFAULT_DURATIONS, PERMANENT
from llm_firewall.schema.typed import Doc, Probability

PRESETS: tuple[str, ...] = ("production", "development", "medical", "financial")
DEFAULT_PRESET = "production"
BASE_MARKER = "$base"  # inside a list of a child policy: splice the parent's items here

MODES = ("enforce", "monitor")
SECURITY_MODES = ("default", "security_aware", "strict")
RESPONSE_ACTIONS = ("content_filter", "error_event", "redact")
RATE_KEYS = ("ip", "user", "key", "session", "agent", "client")
RATE_UNITS = ("requests", "kib")
FAIL_MODES = {"store": ("open", "closed"), "rate_limit": ("open", "closed")}
FP_THRESHOLD_NAMES = ("very_high", "high", "medium", "low", "very_low")
LOG_FORMATS = ("json", "combined", "common")
OVERRIDE_STATUSES = ("stable", "experimental")

# Every action a response may take (their parameters: `policy.spec`).
ACTIONS: tuple[str, ...] = ("block_request", "redact", "rate_limit", "block_ip", "block_ip_range",
                            "terminate_session", "suspend_user", "isolate_agent", "flag_session",
                            "notify", "log")
# Kinds an escalation ladder may end in (timed sanctions against one subject).
LADDER_ACTIONS = ("block_ip", "terminate_session", "suspend_user", "isolate_agent")

_DEFAULT_DURATIONS = DEFAULT_DURATIONS


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names file, line, policy and field."""


@dataclass(frozen=True)
class Action:
    """One thing to do about a finding. `subject` is filled in by `decide` for a given identity."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    subject: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params), "subject": self.subject}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Action":
        return cls(data["kind"], dict(data.get("params") or {}), data.get("subject"))

    @property
    def permanent(self) -> bool:
        return self.kind in _DEFAULT_DURATIONS and self.params.get("duration_s", 0.0) is None


@dataclass(frozen=True)
class IdentityConfig:
    user_header: str = "x-user-id"
    session_header: str = "x-session-id"
    agent_header: str = "x-agent-id"
    trusted_proxies: tuple[str, ...] = ()
    # The one forwarding header believed from trusted proxies (lower case); None: the deployment's
    # (LLM_FIREWALL_FORWARDED_HEADER, default X-Forwarded-For).
    forwarded_header: str | None = None
    # A gateway's header naming an authenticated user, believed only from a trusted proxy: such a
    # user is held alone, not scoped to the caller's key or address.
    trusted_user_header: str | None = None


@dataclass(frozen=True)
class Allowlist:
    ips: tuple[str, ...] = ()  # CIDRs
    users: tuple[str, ...] = ()  # fnmatch patterns


@dataclass(frozen=True)
class RateLimit:
    key: str  # ip | user | key | session | agent | client (user, else key, else ip)
    limit: int
    window_s: float
    # requests: each request counts one. kib: each request counts its body's size in KiB (rounded
    # up), which bounds what one client can make the firewall read and inspect per window.
    unit: str = "requests"


@dataclass(frozen=True)
class When:
    """Conditions of a response rule; None means "any"."""

    threats: frozenset[str] | None = None
    severities: frozenset[str] | None = None
    fp_below: float | None = None  # finding.fp_probability < fp_below
    fp_above: float | None = None  # finding.fp_probability >= fp_above
    categories: frozenset[str] | None = None
    rules: frozenset[str] | None = None
    roles: frozenset[str] | None = None


@dataclass(frozen=True)
class ResponseRule:
    when: When
    do: tuple[Action, ...]
    index: int  # position in `responses`, quoted in decision reasons


@dataclass(frozen=True)
class Escalation:
    """N strikes of the counted threats within a window -> a timed sanction that grows."""

    count: frozenset[str]
    strikes: int
    within_s: float
    do: str
    for_s: float | None  # first duration; None = permanent
    factor: float = 2.0
    max_s: float | None = None
    reset_after_s: float = 86400.0  # the ladder level is forgotten after this long
    index: int = 0

    @property
    def ladder_id(self) -> str:
        return f"esc{self.index}:{self.do}:{'+'.join(sorted(self.count))}"


# A typed model, not a dataclass: the policy file's `fp_thresholds` is validated as this class.
class FpThresholds(Doc):
    """False-positive probability bands, and the values the names in `when` stand for."""

    block_below: Probability = 0.3
    monitor_above: Probability = 0.7
    very_high: Probability = 0.9
    high: Probability = 0.7
    medium: Probability = 0.5
    low: Probability = 0.3
    very_low: Probability = 0.1

    @model_validator(mode="after")
    def _ordered(self) -> "FpThresholds":
        if self.block_below > self.monitor_above:
            raise ValueError("block_below must not exceed monitor_above")
        return self


@dataclass(frozen=True)
class Policy:
    name: str
    mode: str = "enforce"
    security_mode: str = "security_aware"
    identity: IdentityConfig = IdentityConfig()
    allowlist: Allowlist = Allowlist()
    rule_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rate_limits: tuple[RateLimit, ...] = ()
    responses: tuple[ResponseRule, ...] = ()
    escalations: tuple[Escalation, ...] = ()
    approval_required: frozenset[str] = frozenset()
    block_severity: str = "high"
    fp_thresholds: FpThresholds = FpThresholds()
    fail_modes: Mapping[str, str] = field(default_factory=lambda: {"store": "closed", "rate_limit": "open"})
    token_budgets: Mapping[str, int] = field(default_factory=dict)  # {"user": n, "key": n} per day
    response_action: str = "content_filter"
    allow_security_mode_header: bool = False
    canary: bool = True
    notify_targets: Mapping[str, str] = field(default_factory=dict)  # name -> webhook URL
    # Other services' logs the SOC tails and runs the request rules on (like fail2ban):
    # ({"path", "format": json|combined|common, "ban": action spec}, ...)
    scan_logs: tuple[Mapping[str, Any], ...] = ()
    # /v1 endpoints forwarded besides the known ones, as "METHOD path" (a POST's JSON body is
    # inspected by a walk of every string in it; other methods may carry no body).
    passthrough_endpoints: tuple[str, ...] = ()
    # SHA-256 digests (hex) of the operator's own system/developer prompts or Responses API
    # instructions: a text in one of those roles with a listed digest is not inspected. Empty by
    # default: every role is inspected.
    trusted_system_prompts: frozenset[str] = frozenset()
    description: str = ""
    source_path: str = ""
    sha256: str = ""

    @functools.cached_property
    def request_limits(self) -> tuple[RateLimit, ...]:
        """The rate limits counted in requests, checked before a body is read."""
        return tuple(rl for rl in self.rate_limits if rl.unit == "requests")

    @functools.cached_property
    def size_limits(self) -> tuple[RateLimit, ...]:
        """The rate limits counted in KiB of request body, charged once the body is read."""
        return tuple(rl for rl in self.rate_limits if rl.unit == "kib")

    def needs_approval(self, action: Action) -> bool:
        return action.kind in self.approval_required or (
            PERMANENT in self.approval_required and action.permanent
        )

    def summary(self) -> dict[str, Any]:
        """What /api/soc/status shows about the policy in force."""
        return {
            "name": self.name,
            "mode": self.mode,
            "security_mode": self.security_mode,
            "source_path": self.source_path,
            "sha256": self.sha256,
            "responses": len(self.responses),
            "escalations": len(self.escalations),
            "approval_required": sorted(self.approval_required),
        }
