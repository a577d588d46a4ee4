"""Playbooks: the ordered remediation actions the analyst asks the remediator to run.

Actions arrive in policy style (``"terminate_session"`` or ``{"block_ip": {"duration": "1h"}}``)
and are normalised here into one checked shape, so the remediator can refuse anything that is
not a whitelisted action with the right parameters before it touches enforcement state.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from llm_firewall.durations import DEFAULT_DURATIONS, parse_seconds
from llm_firewall.enforce.identity import MIN_IPV6_PREFIX, as_network

SUBJECT_KINDS = ("ip", "user", "session", "key", "agent")


class PlaybookError(ValueError):
    """A playbook or action that fails validation; the message names the action and field."""


# kind -> (subject kinds it may address, {param: type checker}); the whitelist of the remediator.
def _duration(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 10 * 365 * 86400)


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 10_000_000


def _pos_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 365 * 86400


def _short_str(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 2048


def _prefix(lo: int, hi: int) -> Any:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


# Parameter names follow the policy model's normalised actions (llm_firewall/policy/model.py).
ACTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "block_ip": (("ip",), {"duration_s": _duration}),
    "block_ip_range": (("ip",), {"duration_s": _duration, "prefix_v4": _prefix(8, 32), "prefix_v6": _prefix(16, 128)}),
    "rate_limit": (SUBJECT_KINDS, {"limit": _pos_int, "window_s": _pos_num, "duration_s": _pos_num,
                                   "key": lambda v: v in SUBJECT_KINDS}),
    "terminate_session": (("session",), {"duration_s": _duration}),
    "flag_session": (("session",), {"note": lambda v: isinstance(v, str) and len(v) <= 500}),
    "suspend_user": (("user",), {"duration_s": _duration}),
    "isolate_agent": (("agent", "key"), {"duration_s": _duration}),
    "notify": ((), {"target": _short_str, "fmt": lambda v: v in ("json", "slack")}),
    "log": ((), {}),
}
REQUIRED_PARAMS = {"rate_limit": ("limit", "window_s"), "notify": ("target",)}
# Which subject an action addresses when the spec does not say.
# A sanction with no duration would otherwise be permanent downstream: same defaults as the
# policy model, so an action means the same whether the policy or the SOC wrote it.
INLINE_ONLY = frozenset({"block_request", "redact"})  # done by the proxy on the request itself
DEFAULT_SUBJECT = {
    "block_ip": "ip",
    "block_ip_range": "ip",
    "terminate_session": "session",
    "flag_session": "session",
    "suspend_user": "user",
    "isolate_agent": "agent",
}



def parse_duration(value: Any, where: str) -> float | None:
    """Seconds from 90, "90s", "10m", "1h", "1d"; None for "permanent"."""
    if value is None or value in ("permanent", "forever"):
        return None
    try:
        return parse_seconds(value)
    except ValueError:
        raise PlaybookError(f"{where}: duration {value!r} is not a number of seconds or like '10m', '1h'") from None


@dataclass(slots=True)
class Action:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    subject: dict[str, str] = field(default_factory=dict)  # e.g. {"ip": "203.0.113.7"}
    requires_approval: bool = False
    key: str = ""  # idempotency key, set by the playbook

    def canonical(self) -> str:
        return json.dumps([self.kind, self.params, self.subject], sort_keys=True, default=str)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": dict(self.params),
            "subject": dict(self.subject),
            "requires_approval": self.requires_approval,
            "key": self.key,
        }


@dataclass(slots=True)
class Playbook:
    """Ordered actions for one incident. Its id derives from its content unless given, so the
    same playbook built twice carries the same idempotency keys."""

    incident_id: str
    alert_id: str
    actions: list[Action]
    reason: str = ""
    threat: str = ""
    severity: str = ""
    source: str = "inline"
    identity: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    playbook_id: str = ""
    rule_ids: tuple[str, ...] = ()  # the alert's rules, named beside the sanctions it leads to

    def __post_init__(self) -> None:
        if not self.playbook_id:
            content = json.dumps(
                [self.incident_id, self.alert_id, [a.canonical() for a in self.actions]], sort_keys=True
            )
            self.playbook_id = "pb-" + hashlib.sha256(content.encode()).hexdigest()[:16]
        for i, action in enumerate(self.actions):
            if not action.key:
                action.key = f"{self.playbook_id}:{i}:{action.kind}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "playbook_id": self.playbook_id,
            "incident_id": self.incident_id,
            "alert_id": self.alert_id,
            "reason": self.reason,
            "threat": self.threat,
            "severity": self.severity,
            "source": self.source,
            "identity": dict(self.identity),
            "created_at": self.created_at,
            "actions": [a.to_dict() for a in self.actions],
            "rule_ids": list(self.rule_ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Playbook":
        """Rebuild a playbook (e.g. submitted by the server); actions are normalised, not trusted."""
        if not isinstance(data, dict) or not isinstance(data.get("actions"), list):
            raise PlaybookError("playbook: 'actions' must be a list")
        identity = {k: str(v) for k, v in dict(data.get("identity") or {}).items() if v}
        actions = [normalise_action(spec, identity, where=f"actions[{i}]") for i, spec in enumerate(data["actions"])]
        return cls(
            incident_id=str(data.get("incident_id", "")),
            alert_id=str(data.get("alert_id", "")),
            actions=actions,
            reason=str(data.get("reason", "")),
            threat=str(data.get("threat", "")),
            severity=str(data.get("severity", "")),
            source=str(data.get("source", "api")),
            identity=identity,
            created_at=float(data.get("created_at") or 0.0),
            playbook_id=str(data.get("playbook_id", "")),
            rule_ids=tuple(str(r)[:64] for r in list(data.get("rule_ids") or [])[:20]),
        )


def normalise_action(spec: Any, identity: dict[str, str], *, where: str = "action") -> Action:
    """Turn a policy-style action spec into an Action addressed at `identity`."""
    if isinstance(spec, Action):
        return spec
    if not isinstance(spec, (str, dict)) and callable(getattr(spec, "to_dict", None)):
        spec = spec.to_dict()  # a policy-model Action: {"kind", "params", "subject": str | None}
    if isinstance(spec, str):
        kind, params, subject = spec, {}, None
    elif isinstance(spec, dict) and "kind" in spec:
        kind, params, subject = spec["kind"], dict(spec.get("params") or {}), spec.get("subject")
    elif isinstance(spec, dict) and len(spec) == 1:
        ((kind, params),) = spec.items()
        params = dict(params or {})
        subject = None
    else:
        raise PlaybookError(f"{where}: expected an action name or a one-key mapping, got {spec!r:.80}")
    if kind not in ACTIONS:
        raise PlaybookError(f"{where}: action {kind!r} is not allowed (allowed: {', '.join(sorted(ACTIONS))})")
    if "duration" in params:
        params["duration_s"] = parse_duration(params.pop("duration"), f"{where}.{kind}.duration")
    if "window" in params:
        params["window_s"] = parse_duration(params.pop("window"), f"{where}.{kind}.window")
    if "for" in params:
        params["duration_s"] = parse_duration(params.pop("for"), f"{where}.{kind}.for")
    if kind in DEFAULT_DURATIONS and "duration_s" not in params:
        params["duration_s"] = DEFAULT_DURATIONS[kind]
    if kind == "rate_limit" and params.get("key") in (None, "client"):
        # "client": the most specific subject this identity has
        params["key"] = next((k for k in ("user", "key", "ip") if identity.get(k)), "ip")
    if isinstance(subject, str):
        subject = {params["key"] if kind == "rate_limit" else DEFAULT_SUBJECT.get(kind, "ip"): subject}
    if subject is None:
        wanted = params.get("key") if kind == "rate_limit" else DEFAULT_SUBJECT.get(kind)
        if kind == "isolate_agent" and not identity.get("agent") and identity.get("key"):
            wanted = "key"
        subject = {wanted: identity[wanted]} if wanted and identity.get(wanted) else {}
    return Action(kind=kind, params=params, subject={str(k): str(v) for k, v in dict(subject).items()})


def validate_action(action: Action, where: str = "action") -> None:
    """Raise PlaybookError unless `action` is whitelisted and schema-correct."""
    if action.kind not in ACTIONS:
        raise PlaybookError(f"{where}: action {action.kind!r} is not allowed")
    subject_kinds, schema = ACTIONS[action.kind]
    for name, value in action.params.items():
        check = schema.get(name)
        if check is None:
            raise PlaybookError(f"{where}.{action.kind}: unknown parameter {name!r}")
        if not check(value):
            raise PlaybookError(f"{where}.{action.kind}.{name}: invalid value {value!r:.80}")
    for name in REQUIRED_PARAMS.get(action.kind, ()):
        if name not in action.params:
            raise PlaybookError(f"{where}.{action.kind}: missing parameter {name!r}")
    if subject_kinds:
        if len(action.subject) != 1:
            raise PlaybookError(f"{where}.{action.kind}: needs exactly one subject of {', '.join(subject_kinds)}")
        ((kind, value),) = action.subject.items()
        if kind not in subject_kinds:
            raise PlaybookError(f"{where}.{action.kind}.subject: {kind!r} is not one of {', '.join(subject_kinds)}")
        if not value or len(value) > 256 or any(ord(c) < 32 for c in value):
            raise PlaybookError(f"{where}.{action.kind}.subject.{kind}: invalid value")
        if kind == "ip" and not _ip_subject(value):
            raise PlaybookError(f"{where}.{action.kind}.subject.ip: {value!r:.60} is not an IP address")
        if action.kind == "rate_limit" and action.params.get("key", kind) != kind:
            raise PlaybookError(f"{where}.rate_limit.key: does not match the subject {kind!r}")
    elif action.subject:
        raise PlaybookError(f"{where}.{action.kind}: takes no subject")


def _ip_subject(value: str) -> bool:
    """An address, or an IPv6 client's counted network (``2001:db8::/64``): never a wide range."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        net = as_network(value)
        return net is not None and net.version == 6 and net.prefixlen >= MIN_IPV6_PREFIX


def validate_playbook(pb: Playbook) -> None:
    if not pb.actions:
        raise PlaybookError(f"playbook {pb.playbook_id}: has no actions")
    if len(pb.actions) > 32:
        raise PlaybookError(f"playbook {pb.playbook_id}: more than 32 actions")
    for i, action in enumerate(pb.actions):
        validate_action(action, f"playbook {pb.playbook_id} actions[{i}]")
