"""Policy files (YAML) turned into frozen, validated dataclasses.

A policy says what the firewall does about each class of finding. Operators edit these files by
hand and reload them on a live proxy, so every mistake must be reported with the file, the line
and the field, and nothing half-valid may ever be returned. Loading is pure (no server imports):
the caller decides what to do with a `PolicyError` (the server keeps the last good policy).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from llm_firewall.domain import FORWARDED_HEADERS, SEVERITIES, SEVERITY_RANK, THREATS
from llm_firewall.durations import DEFAULT_DURATIONS, PERMANENT, parse_seconds
from llm_firewall.proxy.target import parse_passthrough

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

# Action kind -> allowed parameter names. Every parameter is optional.
ACTION_PARAMS: dict[str, frozenset[str]] = {
    "block_request": frozenset(),
    "redact": frozenset({"threats", "categories"}),
    "rate_limit": frozenset({"limit", "window", "key", "for"}),
    "block_ip": frozenset({"duration"}),
    "block_ip_range": frozenset({"duration", "prefix_v4", "prefix_v6"}),
    "terminate_session": frozenset({"duration"}),
    "suspend_user": frozenset({"duration"}),
    "isolate_agent": frozenset({"duration"}),
    "flag_session": frozenset({"note"}),
    "notify": frozenset({"target"}),
    "log": frozenset(),
}
# Kinds an escalation ladder may end in (timed sanctions against one subject).
LADDER_ACTIONS = ("block_ip", "terminate_session", "suspend_user", "isolate_agent")
# Extra approval_required entry: any sanction without an expiry.

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


@dataclass(frozen=True)
class FpThresholds:
    block_below: float = 0.3
    monitor_above: float = 0.7
    very_high: float = 0.9
    high: float = 0.7
    medium: float = 0.5
    low: float = 0.3
    very_low: float = 0.1


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


# --------------------------------------------------------------------------------------------
# YAML with locations


class _LDict(dict):
    """A mapping that remembers where each key came from (file, line)."""

    loc: tuple[str, int]
    key_locs: dict[Any, tuple[str, int]]


class _LList(list):
    loc: tuple[str, int]
    item_locs: list[tuple[str, int]]


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _from_node(node: yaml.Node, src: str, loader: yaml.SafeLoader) -> Any:
    loc = (src, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = _LDict()
        out.loc, out.key_locs = loc, {}
        for key_node, value_node in node.value:
            key = _from_node(key_node, src, loader)
            kloc = (src, key_node.start_mark.line + 1)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise PolicyError(f"{src}:{kloc[1]}: mapping keys must be plain scalars")
            if key in out:
                raise PolicyError(f"{src}:{kloc[1]}: duplicate key {key!r}")
            out[key] = _from_node(value_node, src, loader)
            out.key_locs[key] = kloc
        return out
    if isinstance(node, yaml.SequenceNode):
        out_l = _LList(_from_node(item, src, loader) for item in node.value)
        out_l.loc = loc
        out_l.item_locs = [(src, item.start_mark.line + 1) for item in node.value]
        return out_l
    return loader.construct_object(node, deep=True)


def _read_yaml(path: Path) -> _LDict:
    src = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{src}: cannot read policy file: {exc}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError(f"{src}:1: empty policy file")
        data = _from_node(node, src, loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{src}{line}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    if not isinstance(data, _LDict):
        raise PolicyError(f"{src}:1: a policy file must be a mapping at top level")
    return data


def _merge(parent: Any, child: Any) -> Any:
    """Child wins; mappings merge key by key; a list containing "$base" splices the parent's."""
    if isinstance(parent, _LDict) and isinstance(child, _LDict):
        out = _LDict(parent)
        out.loc, out.key_locs = child.loc, dict(parent.key_locs)
        for key, value in child.items():
            out[key] = _merge(parent[key], value) if key in parent else value
            out.key_locs[key] = child.key_locs[key]
        return out
    if isinstance(child, _LList) and any(item == BASE_MARKER for item in child):
        out_l = _LList()
        out_l.loc, out_l.item_locs = child.loc, []
        base_items = list(parent) if isinstance(parent, list) else []
        base_locs = list(getattr(parent, "item_locs", [child.loc] * len(base_items)))
        for item, loc in zip(child, child.item_locs):
            if item == BASE_MARKER:
                out_l.extend(base_items)
                out_l.item_locs.extend(base_locs)
            else:
                out_l.append(item)
                out_l.item_locs.append(loc)
        return out_l
    return child


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Validation helpers

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _V:
    """Validation context: knows the policy name and turns a field path into file:line."""

    def __init__(self, name: str, fallback: tuple[str, int]):
        self.name = name
        self.fallback = fallback

    def fail(self, where: tuple[str, int] | None, path: str, msg: str) -> PolicyError:
        src, line = where or self.fallback
        return PolicyError(f"{src}:{line}: policy {self.name!r}: field {path!r}: {msg}")

    @staticmethod
    def loc_of(container: Any, key: Any) -> tuple[str, int] | None:
        if isinstance(container, _LDict):
            return container.key_locs.get(key, container.loc)
        if isinstance(container, _LList) and isinstance(key, int) and key < len(container.item_locs):
            return container.item_locs[key]
        return getattr(container, "loc", None)

    def mapping(self, data: Any, where: tuple[str, int] | None, path: str, allowed: set[str] | frozenset[str]) -> _LDict:
        if not isinstance(data, dict):
            raise self.fail(where, path, f"expected a mapping, got {_kind(data)}")
        for key in data:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(sorted(allowed))})"
                raise self.fail(self.loc_of(data, key), _join(path, key), f"unknown key {key!r}{extra}")
        if not isinstance(data, _LDict):  # produced by defaults, not YAML
            wrapped = _LDict(data)
            wrapped.loc, wrapped.key_locs = where or self.fallback, {}
            return wrapped
        return data

    def seq(self, data: Any, where: tuple[str, int] | None, path: str) -> list:
        if isinstance(data, (str, bytes)) or not isinstance(data, list):
            raise self.fail(where, path, f"expected a list, got {_kind(data)}")
        return data

    def str_list(self, data: Any, where: tuple[str, int] | None, path: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        items = [data] if isinstance(data, str) else self.seq(data, where, path)
        out = []
        for i, item in enumerate(items):
            iloc = self.loc_of(data, i) if not isinstance(data, str) else where
            if not isinstance(item, str) or not item:
                raise self.fail(iloc, f"{path}[{i}]", f"expected a non-empty string, got {_kind(item)}")
            if allowed is not None and item not in allowed:
                raise self.fail(iloc, f"{path}[{i}]", _unknown(item, allowed))
            out.append(item)
        return tuple(out)

    def choice(self, value: Any, where: tuple[str, int] | None, path: str, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(where, path, _unknown(value, allowed))
        return value

    def number(self, value: Any, where: tuple[str, int] | None, path: str, lo: float, hi: float, integer: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise self.fail(where, path, f"expected {'an integer' if integer else 'a number'}, got {_kind(value)}")
        if not lo <= value <= hi:
            raise self.fail(where, path, f"{value} is out of range [{lo}, {hi}]")
        return value

    def boolean(self, value: Any, where: tuple[str, int] | None, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, path, f"expected true or false, got {_kind(value)}")
        return value

    def duration(self, value: Any, where: tuple[str, int] | None, path: str, allow_permanent: bool = False) -> float | None:
        """'90s', '10m', '1h', '2d', a number of seconds; 'permanent' (or null) where allowed."""
        if allow_permanent and (value is None or value == PERMANENT):
            return None
        try:
            seconds = parse_seconds(value)
        except ValueError:
            also = " or 'permanent'" if allow_permanent else ""
            raise self.fail(where, path, f"expected a duration such as 90s, 10m, 1h, 2d{also}; got {value!r}")
        if seconds <= 0 or seconds > 10 * 365 * 86400:
            raise self.fail(where, path, f"duration {value!r} must be positive and at most 10 years")
        return seconds

    def fp(self, value: Any, where: tuple[str, int] | None, path: str, named: FpThresholds | None) -> float:
        if isinstance(value, str) and named is not None and value in FP_THRESHOLD_NAMES:
            return getattr(named, value)
        if isinstance(value, str):
            raise self.fail(where, path, f"expected a probability 0..1 or one of {', '.join(FP_THRESHOLD_NAMES)}; got {value!r}")
        return float(self.number(value, where, path, 0.0, 1.0))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    for typ, label in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"), (str, "a string")):
        if isinstance(value, typ):
            return label
    return type(value).__name__


def _unknown(value: Any, allowed: tuple[str, ...] | frozenset[str]) -> str:
    hint = difflib.get_close_matches(str(value), sorted(allowed), n=1)
    tail = f" (did you mean {hint[0]!r}?)" if hint else f" (expected one of: {', '.join(sorted(allowed))})"
    return f"unknown value {value!r}{tail}"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _substitute_env(data: Any, v: _V, where: tuple[str, int] | None, path: str) -> Any:
    """Replace ${NAME} and ${NAME:-default} in strings; a missing variable is an error."""
    if isinstance(data, dict):
        for key in list(data):
            data[key] = _substitute_env(data[key], v, v.loc_of(data, key), _join(path, key))
        return data
    if isinstance(data, list):
        for i in range(len(data)):
            data[i] = _substitute_env(data[i], v, v.loc_of(data, i), f"{path}[{i}]")
        return data
    if isinstance(data, str) and "${" in data:
        def repl(m: re.Match[str]) -> str:
            value = os.environ.get(m.group(1))
            if value is None:
                if m.group(2) is None:
                    raise v.fail(where, path, f"environment variable {m.group(1)} is not set")
                return m.group(2)
            return value

        return _ENV.sub(repl, data)
    return data


# --------------------------------------------------------------------------------------------
# The schema

_TOP_KEYS = frozenset({
    "name", "extends", "description", "mode", "security_mode", "identity", "allowlist",
    "rule_overrides", "rate_limits", "responses", "escalations", "approval_required",
    "block_severity", "fp_thresholds", "fail_modes", "token_budgets", "response_action",
    "allow_security_mode_header", "canary", "notify_targets", "scan_logs", "passthrough_endpoints",
    "trusted_system_prompts",
})
_SCAN_LOG_KEYS = frozenset({"path", "format", "ban"})
LOG_FORMATS = ("json", "combined", "common")
_RULE_OVERRIDE_KEYS = frozenset({"enabled", "severity", "status"})
_SHA256 = re.compile(r"[0-9A-Fa-f]{64}")
_WHEN_KEYS = frozenset({"threat", "severity", "min_severity", "fp_below", "fp_above", "category", "rule", "role"})


def _build(data: _LDict, v: _V, source: str, digest: str) -> Policy:
    data = v.mapping(data, data.loc, "", _TOP_KEYS)
    loc = v.loc_of

    def get(key: str, default: Any = None) -> tuple[Any, tuple[str, int] | None]:
        return data.get(key, default), loc(data, key)

    name, where = get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise v.fail(where, "name", f"expected a short name (letters, digits, _ . -), got {name!r}")
    v.name = name
    description, where = get("description", "")
    if not isinstance(description, str):
        raise v.fail(where, "description", "expected a string")

    mode = v.choice(*get("mode", "enforce"), "mode", MODES)
    security_mode = v.choice(*get("security_mode", "security_aware"), "security_mode", SECURITY_MODES)
    response_action = v.choice(*get("response_action", "content_filter"), "response_action", RESPONSE_ACTIONS)
    allow_header = v.boolean(*get("allow_security_mode_header", False), "allow_security_mode_header")
    canary = v.boolean(*get("canary", True), "canary")
    block_severity = v.choice(*get("block_severity", "high"), "block_severity", SEVERITIES)

    # identity
    raw, where = get("identity", {})
    ident = v.mapping(raw, where, "identity", {"user", "session", "agent", "trusted_proxies", "forwarded_header",
                                               "trusted_user"})
    headers = {}
    for key, default in (("user", "x-user-id"), ("session", "x-session-id"), ("agent", "x-agent-id")):
        value = ident.get(key, f"header:{default}")
        if not isinstance(value, str) or not re.fullmatch(r"header:[A-Za-z0-9-]{1,64}", value):
            raise v.fail(loc(ident, key), f"identity.{key}", f"expected 'header:<header-name>', got {value!r}")
        headers[key] = value.split(":", 1)[1].lower()
    gateway_user = ident.get("trusted_user")
    if gateway_user is not None:
        if not isinstance(gateway_user, str) or not re.fullmatch(r"header:[A-Za-z0-9-]{1,64}", gateway_user):
            raise v.fail(loc(ident, "trusted_user"), "identity.trusted_user",
                         f"expected 'header:<header-name>', got {gateway_user!r}")
        gateway_user = gateway_user.split(":", 1)[1].lower()
    forwarded = ident.get("forwarded_header")
    if forwarded is not None:
        forwarded = v.choice(str(forwarded).lower(), loc(ident, "forwarded_header"), "identity.forwarded_header",
                             FORWARDED_HEADERS)
    proxies = _cidrs(v, ident.get("trusted_proxies", []), loc(ident, "trusted_proxies"), "identity.trusted_proxies")
    identity = IdentityConfig(headers["user"], headers["session"], headers["agent"], proxies, forwarded, gateway_user)

    raw, where = get("allowlist", {})
    allow = v.mapping(raw, where, "allowlist", {"ips", "users"})
    allowlist = Allowlist(
        _cidrs(v, allow.get("ips", []), loc(allow, "ips"), "allowlist.ips"),
        v.str_list(allow.get("users", []), loc(allow, "users"), "allowlist.users"),
    )

    # thresholds first: responses may refer to them by name
    raw, where = get("fp_thresholds", {})
    fpt = v.mapping(raw, where, "fp_thresholds", set(FpThresholds.__dataclass_fields__))
    thresholds = FpThresholds(**{
        k: float(v.number(val, loc(fpt, k), f"fp_thresholds.{k}", 0.0, 1.0)) for k, val in fpt.items()
    })
    if thresholds.block_below > thresholds.monitor_above:
        raise v.fail(where, "fp_thresholds", "block_below must not exceed monitor_above")

    raw, where = get("rule_overrides", {})
    overrides_in = v.mapping(raw, where, "rule_overrides", set(raw) if isinstance(raw, dict) else set())
    overrides: dict[str, Mapping[str, Any]] = {}
    for rule_id, body in overrides_in.items():
        path = f"rule_overrides.{rule_id}"
        body = v.mapping(body, loc(overrides_in, rule_id), path, _RULE_OVERRIDE_KEYS)
        entry: dict[str, Any] = {}
        if "enabled" in body:
            entry["enabled"] = v.boolean(body["enabled"], loc(body, "enabled"), f"{path}.enabled")
        if "severity" in body:
            entry["severity"] = v.choice(body["severity"], loc(body, "severity"), f"{path}.severity", SEVERITIES)
        if "status" in body:
            entry["status"] = v.choice(body["status"], loc(body, "status"), f"{path}.status", ("stable", "experimental"))
        overrides[str(rule_id)] = entry

    raw, where = get("rate_limits", [])
    rate_limits = []
    for i, item in enumerate(v.seq(raw, where, "rate_limits")):
        path = f"rate_limits[{i}]"
        item = v.mapping(item, loc(raw, i), path, {"key", "limit", "window", "unit"})
        for req in ("key", "limit", "window"):
            if req not in item:
                raise v.fail(loc(raw, i), f"{path}.{req}", "required")
        rate_limits.append(RateLimit(
            v.choice(item["key"], loc(item, "key"), f"{path}.key", RATE_KEYS),
            int(v.number(item["limit"], loc(item, "limit"), f"{path}.limit", 1, 10**9, integer=True)),
            v.duration(item["window"], loc(item, "window"), f"{path}.window"),
            v.choice(item.get("unit", "requests"), loc(item, "unit"), f"{path}.unit", RATE_UNITS),
        ))

    raw, where = get("notify_targets", {})
    targets_in = v.mapping(raw, where, "notify_targets", set(raw) if isinstance(raw, dict) else set())
    notify_targets = {}
    for tname, url in targets_in.items():
        if not isinstance(url, str) or not re.match(r"https?://", url):
            raise v.fail(loc(targets_in, tname), f"notify_targets.{tname}", "expected an http(s) URL")
        notify_targets[str(tname)] = url

    raw, where = get("responses", [])
    responses = tuple(
        _response(v, item, loc(raw, i), f"responses[{i}]", i, thresholds, notify_targets)
        for i, item in enumerate(v.seq(raw, where, "responses"))
    )

    raw, where = get("escalations", [])
    escalations = tuple(
        _escalation(v, item, loc(raw, i), f"escalations[{i}]", i)
        for i, item in enumerate(v.seq(raw, where, "escalations"))
    )

    raw, where = get("approval_required", [])
    approval = frozenset(v.str_list(raw, where, "approval_required", tuple(ACTION_PARAMS) + (PERMANENT,)))

    raw, where = get("fail_modes", {})
    fm_in = v.mapping(raw, where, "fail_modes", set(FAIL_MODES))
    fail_modes = {"store": "closed", "rate_limit": "open"}
    for key, value in fm_in.items():
        fail_modes[key] = v.choice(value, loc(fm_in, key), f"fail_modes.{key}", FAIL_MODES[key])

    raw, where = get("scan_logs", [])
    scan_logs = []
    for i, item in enumerate(v.seq(raw, where, "scan_logs")):
        path = f"scan_logs[{i}]"
        item = v.mapping(item, loc(raw, i), path, _SCAN_LOG_KEYS)
        if not isinstance(item.get("path"), str) or not item["path"].strip():
            raise v.fail(loc(raw, i), f"{path}.path", "required: the log file to watch")
        entry: dict[str, Any] = {"path": item["path"],
                                 "format": v.choice(item.get("format", "combined"), loc(item, "format"),
                                                    f"{path}.format", LOG_FORMATS)}
        if "ban" in item:
            entry["ban"] = _plain(item["ban"])
        scan_logs.append(entry)

    raw, where = get("passthrough_endpoints", [])
    passthrough = v.str_list(raw, where, "passthrough_endpoints")
    for i, entry in enumerate(passthrough):
        try:
            parse_passthrough(entry)
        except ValueError as exc:
            raise v.fail(loc(raw, i) or where, f"passthrough_endpoints[{i}]", str(exc)) from None

    raw, where = get("trusted_system_prompts", [])
    trusted = v.str_list(raw, where, "trusted_system_prompts")
    for i, digest in enumerate(trusted):
        if not _SHA256.fullmatch(digest):
            raise v.fail(loc(raw, i) or where, f"trusted_system_prompts[{i}]",
                         f"expected a SHA-256 digest (64 hex digits) of the prompt's UTF-8 text, got {digest[:80]!r}")

    raw, where = get("token_budgets", {})
    tb_in = v.mapping(raw, where, "token_budgets", {"user", "key"})
    token_budgets = {
        k: int(v.number(val, loc(tb_in, k), f"token_budgets.{k}", 1, 10**12, integer=True)) for k, val in tb_in.items()
    }

    return Policy(
        name=name, mode=mode, security_mode=security_mode, identity=identity, allowlist=allowlist,
        rule_overrides=overrides, rate_limits=tuple(rate_limits), responses=responses,
        escalations=escalations, approval_required=approval, block_severity=block_severity,
        fp_thresholds=thresholds, fail_modes=fail_modes,
        token_budgets=token_budgets, response_action=response_action,
        allow_security_mode_header=allow_header, canary=canary,
        notify_targets=notify_targets, description=description.strip(), scan_logs=tuple(scan_logs),
        passthrough_endpoints=passthrough,
        trusted_system_prompts=frozenset(d.lower() for d in trusted),
        source_path=source, sha256=digest,
    )


def _cidrs(v: _V, raw: Any, where: tuple[str, int] | None, path: str) -> tuple[str, ...]:
    out = []
    for i, item in enumerate(v.str_list(raw, where, path)):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise v.fail(v.loc_of(raw, i) if isinstance(raw, list) else where, f"{path}[{i}]", f"not an IP network: {item!r}") from None
    return tuple(out)


def _response(v: _V, item: Any, where: tuple[str, int] | None, path: str, index: int,
              thresholds: FpThresholds, targets: Mapping[str, str]) -> ResponseRule:
    item = v.mapping(item, where, path, {"when", "do"})
    if "do" not in item:
        raise v.fail(where, f"{path}.do", "required")
    when_raw = v.mapping(item.get("when", {}), v.loc_of(item, "when"), f"{path}.when", _WHEN_KEYS)
    w = f"{path}.when"

    def opt_set(key: str, allowed: tuple[str, ...] | None = None) -> frozenset[str] | None:
        if key not in when_raw:
            return None
        return frozenset(v.str_list(when_raw[key], v.loc_of(when_raw, key), f"{w}.{key}", allowed))

    severities = opt_set("severity", SEVERITIES)
    if "min_severity" in when_raw:
        if severities is not None:
            raise v.fail(v.loc_of(when_raw, "min_severity"), f"{w}.min_severity", "use either severity or min_severity")
        lowest = v.choice(when_raw["min_severity"], v.loc_of(when_raw, "min_severity"), f"{w}.min_severity", SEVERITIES)
        severities = frozenset(s for s in SEVERITIES if SEVERITY_RANK[s] >= SEVERITY_RANK[lowest])
    fp_below = fp_above = None
    if "fp_below" in when_raw:
        fp_below = v.fp(when_raw["fp_below"], v.loc_of(when_raw, "fp_below"), f"{w}.fp_below", thresholds)
    if "fp_above" in when_raw:
        fp_above = v.fp(when_raw["fp_above"], v.loc_of(when_raw, "fp_above"), f"{w}.fp_above", thresholds)
    when = When(
        threats=opt_set("threat", THREATS), severities=severities, fp_below=fp_below, fp_above=fp_above,
        categories=opt_set("category"), rules=opt_set("rule"), roles=opt_set("role"),
    )
    do_raw = item["do"]
    do_list = [do_raw] if isinstance(do_raw, (str, dict)) else v.seq(do_raw, v.loc_of(item, "do"), f"{path}.do")
    actions = []
    for j, entry in enumerate(do_list):
        eloc = v.loc_of(do_raw, j) if isinstance(do_raw, list) else v.loc_of(item, "do")
        actions.append(_action(v, entry, eloc, f"{path}.do[{j}]", targets))
    if not actions:
        raise v.fail(v.loc_of(item, "do"), f"{path}.do", "needs at least one action")
    return ResponseRule(when, tuple(actions), index)


def _action(v: _V, entry: Any, where: tuple[str, int] | None, path: str, targets: Mapping[str, str]) -> Action:
    """`block_request` or `{block_ip: {duration: 1h}}` -> Action with normalised params."""
    if isinstance(entry, str):
        kind, params_in = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        kind, params_in = next(iter(entry.items()))
        params_in = {} if params_in is None else params_in
    else:
        raise v.fail(where, path, "expected an action name or a one-key mapping {action: {params}}")
    if kind not in ACTION_PARAMS:
        raise v.fail(where, path, f"unknown action {kind!r}" + _hint(kind, ACTION_PARAMS))
    params_in = v.mapping(params_in, where, f"{path}.{kind}", ACTION_PARAMS[kind])
    p = f"{path}.{kind}"
    ploc = lambda key: v.loc_of(params_in, key)  # noqa: E731
    params: dict[str, Any] = {}
    if kind in _DEFAULT_DURATIONS:
        params["duration_s"] = (
            v.duration(params_in["duration"], ploc("duration"), f"{p}.duration", allow_permanent=True)
            if "duration" in params_in else _DEFAULT_DURATIONS[kind]
        )
    if kind == "block_ip_range":
        params["prefix_v4"] = int(v.number(params_in.get("prefix_v4", 24), ploc("prefix_v4"), f"{p}.prefix_v4", 8, 32, True))
        params["prefix_v6"] = int(v.number(params_in.get("prefix_v6", 64), ploc("prefix_v6"), f"{p}.prefix_v6", 16, 128, True))
    elif kind == "rate_limit":
        params["limit"] = int(v.number(params_in.get("limit", 5), ploc("limit"), f"{p}.limit", 1, 10**9, True))
        params["window_s"] = v.duration(params_in.get("window", "120s"), ploc("window"), f"{p}.window")
        params["key"] = v.choice(params_in.get("key", "client"), ploc("key"), f"{p}.key", RATE_KEYS)
        params["duration_s"] = v.duration(params_in.get("for", "1h"), ploc("for"), f"{p}.for")
    elif kind == "notify":
        target = params_in.get("target", "default")
        if not isinstance(target, str) or (targets and target not in targets and target != "default"):
            raise v.fail(ploc("target"), f"{p}.target", _unknown(target, tuple(targets) or ("default",)))
        params["target"] = target
    elif kind == "redact":
        for key in ("threats", "categories"):
            if key in params_in:
                params[key] = list(v.str_list(params_in[key], ploc(key), f"{p}.{key}", THREATS if key == "threats" else None))
    elif kind == "flag_session" and "note" in params_in:
        if not isinstance(params_in["note"], str):
            raise v.fail(ploc("note"), f"{p}.note", "expected a string")
        params["note"] = params_in["note"]
    return Action(kind, params)


def _hint(value: str, allowed: Mapping[str, Any] | tuple[str, ...]) -> str:
    hint = difflib.get_close_matches(value, sorted(allowed), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _escalation(v: _V, item: Any, where: tuple[str, int] | None, path: str, index: int) -> Escalation:
    item = v.mapping(item, where, path, {"count", "strikes", "within", "do", "for", "factor", "max", "reset_after"})
    for req in ("count", "strikes", "within", "do"):
        if req not in item:
            raise v.fail(where, f"{path}.{req}", "required")
    loc = lambda key: v.loc_of(item, key)  # noqa: E731
    do = item["do"]
    if do not in LADDER_ACTIONS:
        raise v.fail(loc("do"), f"{path}.do", f"unknown escalation action {do!r}; expected one of {', '.join(LADDER_ACTIONS)}")
    first = v.duration(item.get("for", _DEFAULT_DURATIONS[do]), loc("for"), f"{path}.for", allow_permanent=True)
    cap = v.duration(item["max"], loc("max"), f"{path}.max", allow_permanent=True) if "max" in item else first
    if first is not None and cap is not None and cap < first:
        raise v.fail(loc("max"), f"{path}.max", "must be at least 'for'")
    return Escalation(
        count=frozenset(v.str_list(item["count"], loc("count"), f"{path}.count", THREATS)),
        strikes=int(v.number(item["strikes"], loc("strikes"), f"{path}.strikes", 1, 10**6, integer=True)),
        within_s=v.duration(item["within"], loc("within"), f"{path}.within"),
        do=do,
        for_s=first,
        factor=float(v.number(item.get("factor", 2.0), loc("factor"), f"{path}.factor", 1.0, 100.0)),
        max_s=cap,
        reset_after_s=v.duration(item.get("reset_after", "24h"), loc("reset_after"), f"{path}.reset_after"),
        index=index,
    )


# --------------------------------------------------------------------------------------------
# Loading


def default_policies_dir() -> Path:
    """The repository's policies/ in a checkout; the copy bundled in the package otherwise."""
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "policies"
    if checkout.is_dir() and (checkout / f"{DEFAULT_PRESET}.yaml").is_file():
        return checkout
    return here.parents[1] / "bundled" / "policies"


def _resolve(name_or_path: str, directory: Path, relative_to: Path | None = None) -> Path:
    looks_like_path = any(sep in name_or_path for sep in ("/", os.sep)) or name_or_path.endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(name_or_path)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        return path
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name_or_path):
        raise PolicyError(f"invalid policy name {name_or_path!r}")
    return directory / f"{name_or_path}.yaml"


def _load_chain(path: Path, directory: Path, seen: tuple[Path, ...]) -> _LDict:
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []
        raise PolicyError(f"{_display(path)}: policy file not found (presets in {_display(directory)}: {', '.join(known) or 'none'})")
    real = path.resolve()
    if real in seen:
        chain = " -> ".join(_display(p) for p in seen + (real,))
        raise PolicyError(f"{_display(path)}:1: 'extends' loops: {chain}")
    data = _read_yaml(path)
    parent_name = data.pop("extends", None)
    if parent_name is None:
        return data
    where = data.key_locs.get("extends", data.loc)
    if not isinstance(parent_name, str) or not parent_name:
        raise PolicyError(f"{where[0]}:{where[1]}: field 'extends': expected a policy name or path")
    # A name is looked up next to the extending file, then in the policies directory, then
    # among the shipped presets (so an operator's own file can say `extends: production`).
    for where_dir in (path.parent, directory, default_policies_dir()):
        parent_path = _resolve(parent_name, where_dir, relative_to=path.parent)
        if parent_path.is_file():
            break
    try:
        parent = _load_chain(parent_path, directory, seen + (real,))
    except PolicyError as exc:
        raise PolicyError(f"{where[0]}:{where[1]}: field 'extends': {exc}") from None
    return _merge(parent, data)


def load_policy(name_or_path: str, policies_dir: str | Path | None = None) -> Policy:
    """Load a preset by name or a policy file by path, with its `extends` chain resolved.

    Raises PolicyError naming file, line, policy and field for anything wrong; never returns a
    partially valid policy.
    """
    directory = Path(policies_dir) if policies_dir is not None else default_policies_dir()
    path = _resolve(str(name_or_path), directory)
    data = _load_chain(path, directory, ())
    # The digest covers the resolved document before ${ENV} substitution: it identifies the
    # policy text in status and audit without depending on (or hinting at) secret values.
    digest = hashlib.sha256(json.dumps(_plain(data), sort_keys=True, default=str).encode()).hexdigest()
    v = _V(str(data.get("name", path.stem)), data.loc)
    data = _substitute_env(data, v, data.loc, "")
    return _build(data, v, str(path), digest)


def list_presets(policies_dir: str | Path | None = None) -> list[str]:
    directory = Path(policies_dir) if policies_dir is not None else default_policies_dir()
    return sorted(p.stem for p in directory.glob("*.yaml") if p.stem != "base")
