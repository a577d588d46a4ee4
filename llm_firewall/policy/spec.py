"""A policy file as typed models: the one description of what a policy may say.

Pydantic validates a policy (after `extends` and `${ENV}` are resolved) against these models,
and `llm-firewall schema policy` writes them out as JSON Schema for editors. `to_policy` then
turns the validated document into the dataclasses of `policy.types` the rest of the code reads.
"""

from __future__ import annotations

import ipaddress
from functools import partial
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, PlainValidator, Tag, WithJsonSchema, \
    model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from llm_firewall.domain import FORWARDED_HEADERS, SEVERITIES, SEVERITY_RANK
from llm_firewall.durations import DEFAULT_DURATIONS, DURATION_PATTERN, PERMANENT, parse_seconds
from llm_firewall.policy.types import (ACTIONS, BASE_MARKER, FAIL_MODES, FP_THRESHOLD_NAMES, LADDER_ACTIONS, LOG_FORMATS, MODES,
                                       OVERRIDE_STATUSES, RATE_KEYS, RATE_UNITS, RESPONSE_ACTIONS, SECURITY_MODES,
                                       Action, Allowlist, Escalation, FpThresholds, IdentityConfig, Policy, RateLimit,
                                       ResponseRule, When)
from llm_firewall.proxy.target import parse_passthrough
from llm_firewall.schema.typed import (Doc, FileSchema, OneOrMany, Severity, Text, Threat, choice, kind,
                                      located_error, many, matching, optional)

MAX_DURATION_S = 10 * 365 * 86400.0


def _seconds(value: Any, permanent: bool) -> float | None:
    if permanent and (value is None or value == PERMANENT):
        return None
    try:
        seconds = parse_seconds(value)
    except ValueError:
        also = " or 'permanent'" if permanent else ""
        raise PydanticCustomError("duration", f"expected a duration such as 90s, 10m, 1h, 2d{also}; got {value!r}")
    if not 0 < seconds <= MAX_DURATION_S:
        raise PydanticCustomError("duration", f"duration {value!r} must be positive and at most 10 years")
    return seconds


_DURATION_JSON: JsonSchemaValue = {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                                             {"type": "string", "pattern": DURATION_PATTERN}]}
Duration = Annotated[float, PlainValidator(partial(_seconds, permanent=False)), WithJsonSchema(_DURATION_JSON)]
MaybePermanent = Annotated[
    Union[float, None], PlainValidator(partial(_seconds, permanent=True)),
    WithJsonSchema({"anyOf": [*_DURATION_JSON["anyOf"], {"const": PERMANENT}, {"type": "null"}]})]


def _fp(value: Any) -> float | str:
    if isinstance(value, str):
        if value in FP_THRESHOLD_NAMES:
            return value
        raise PydanticCustomError(
            "fp", f"expected a probability 0..1 or one of {', '.join(FP_THRESHOLD_NAMES)}; got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("fp", f"expected a number, got {kind(value)}")
    if not 0.0 <= value <= 1.0:
        raise PydanticCustomError("fp", f"{value} is out of range [0.0, 1.0]")
    return float(value)


# A false-positive probability, or the name of one of the policy's fp_thresholds.
Fp = Annotated[Union[float, str], PlainValidator(_fp), WithJsonSchema(
    {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"enum": list(FP_THRESHOLD_NAMES)}]})]


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"not an IP network: {value!r}") from None


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http(s) URL")
    return value


def _passthrough(value: str) -> str:
    parse_passthrough(value)  # ValueError says what is wrong
    return value


def _any_case(words: tuple[str, ...]) -> str:
    return "^(?:" + "|".join("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in w)
                             for w in words) + ")$"


Cidr = Annotated[str, AfterValidator(_network)]
HeaderRef = matching(r"^header:[A-Za-z0-9-]{1,64}$", "expected 'header:<header-name>'")
ForwardedHeader = Annotated[choice(FORWARDED_HEADERS), BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v),
                            WithJsonSchema({"type": "string", "pattern": _any_case(FORWARDED_HEADERS)})]
Url = Annotated[str, AfterValidator(_url), WithJsonSchema({"type": "string", "pattern": r"^(?:https?://|\$\{)"})]


def _count(hi: int) -> Any:
    return Annotated[int, Field(ge=1, le=hi)]


class IdentitySpec(Doc):
    """Where a caller's ids are read (`header:<name>`) and whom to believe about its address."""

    user: HeaderRef = "header:x-user-id"
    session: HeaderRef = "header:x-session-id"
    agent: HeaderRef = "header:x-agent-id"
    trusted_proxies: many(Cidr) = Field(default_factory=list, description="CIDRs whose forwarding header is believed")
    forwarded_header: optional(ForwardedHeader) = Field(
        None, description="X-Forwarded-For, Forwarded or X-Real-IP (default: LLM_FIREWALL_FORWARDED_HEADER)")
    trusted_user: optional(HeaderRef) = Field(
        None, description="a gateway's header naming an authenticated user, believed from trusted proxies only")


class AllowlistSpec(Doc):
    """Callers never sanctioned: CIDRs and user-name patterns (fnmatch)."""

    ips: many(Cidr) = Field(default_factory=list)
    users: many(Text) = Field(default_factory=list)


class RuleOverrideSpec(Doc):
    """What this policy changes about one detection rule."""

    enabled: optional(bool) = None
    severity: optional(Severity) = None
    status: optional(choice(OVERRIDE_STATUSES)) = None


class RateLimitSpec(Doc):
    """At most `limit` requests (or KiB of request body) per `window` for each `key`."""

    key: choice(RATE_KEYS) = Field(description="client = user, else API key, else IP")
    limit: _count(10**9)
    window: Duration
    unit: choice(RATE_UNITS) = "requests"


class WhenSpec(Doc):
    """Conditions on a finding; an absent condition matches anything."""

    threat: optional(many(Threat)) = None
    severity: optional(many(Severity)) = None
    min_severity: optional(Severity) = None
    fp_below: optional(Fp) = Field(None, description="the finding's false-positive probability is below this")
    fp_above: optional(Fp) = Field(None, description="the finding's false-positive probability is at least this")
    category: optional(many(Text)) = None
    rule: optional(many(Text)) = None
    role: optional(many(Text)) = None

    @model_validator(mode="after")
    def _one_severity_test(self) -> "WhenSpec":
        if self.severity is not None and self.min_severity is not None:
            raise located_error(("min_severity",), "use either severity or min_severity")
        return self


class NoParams(Doc):
    """An action without parameters."""


class TimedParams(Doc):
    """A sanction that lasts `duration` (default: the action's own; `permanent` never expires)."""

    duration: MaybePermanent = None


class BlockIpRangeParams(TimedParams):
    prefix_v4: Annotated[int, Field(ge=8, le=32)] = 24
    prefix_v6: Annotated[int, Field(ge=16, le=128)] = 64


class RateLimitParams(Doc):
    """Once `limit` requests arrive within `window`, the `key` is limited `for` this long."""

    limit: _count(10**9) = 5
    window: Duration = 120.0
    key: choice(RATE_KEYS) = "client"
    for_: Duration = Field(3600.0, alias="for")


class RedactParams(Doc):
    """Mask the matched text instead of refusing (optionally only these threats or categories)."""

    threats: optional(many(Threat)) = None
    categories: optional(many(Text)) = None


class FlagSessionParams(Doc):
    note: optional(str) = None


class NotifyParams(Doc):
    target: str = Field("default", description="a name from notify_targets")


PARAMS: dict[str, type[Doc]] = {
    "block_request": NoParams, "log": NoParams, "redact": RedactParams, "rate_limit": RateLimitParams,
    "block_ip": TimedParams, "terminate_session": TimedParams, "suspend_user": TimedParams,
    "isolate_agent": TimedParams, "block_ip_range": BlockIpRangeParams, "flag_session": FlagSessionParams,
    "notify": NotifyParams,
}
assert set(PARAMS) == set(ACTIONS)


class ActionMap(Doc):
    """`{action: {parameters}}`: exactly one action."""

    model_config = {"json_schema_extra": {"minProperties": 1, "maxProperties": 1}}
    key_noun = "action"

    block_request: optional(NoParams, null=True) = None
    redact: optional(RedactParams, null=True) = None
    rate_limit: optional(RateLimitParams, null=True) = None
    block_ip: optional(TimedParams, null=True) = None
    block_ip_range: optional(BlockIpRangeParams, null=True) = None
    terminate_session: optional(TimedParams, null=True) = None
    suspend_user: optional(TimedParams, null=True) = None
    isolate_agent: optional(TimedParams, null=True) = None
    flag_session: optional(FlagSessionParams, null=True) = None
    notify: optional(NotifyParams, null=True) = None
    log: optional(NoParams, null=True) = None

    @model_validator(mode="before")
    @classmethod
    def _one_action(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) != 1:
            raise PydanticCustomError("action", "expected an action name or a one-key mapping {action: {params}}")
        return data

    def action(self) -> tuple[str, Doc]:
        kind = next(iter(self.model_fields_set))
        return kind, getattr(self, kind) or PARAMS[kind]()


_ACTION_TAGS = ("action-name", "action-map")


def _action_form(value: Any) -> str | None:
    return _ACTION_TAGS[0] if isinstance(value, str) else _ACTION_TAGS[1] if isinstance(value, dict) else None


ActionEntry = Annotated[
    Union[Annotated[choice(ACTIONS, "action"), Tag(_ACTION_TAGS[0])], Annotated[ActionMap, Tag(_ACTION_TAGS[1])]],
    Discriminator(_action_form, custom_error_type="action",
                  custom_error_message="expected an action name or a one-key mapping {action: {params}}")]


def hidden_in_paths(part: Any) -> bool:
    """Union tags pydantic puts in error paths, which are not keys of the file."""
    return part in _ACTION_TAGS


class ResponseSpec(Doc):
    """For a finding that meets `when`, take the actions in `do` (the first matching response wins)."""

    when: WhenSpec = Field(default_factory=WhenSpec)
    do: Annotated[list[ActionEntry], OneOrMany(), Field(min_length=1)]


class EscalationSpec(Doc):
    """`strikes` findings of the `count` threats within `within` -> a sanction that grows by
    `factor` each time, up to `max`, forgotten after `reset_after`."""

    count: many(Threat)
    strikes: _count(10**6)
    within: Duration
    do: choice(LADDER_ACTIONS, "escalation action")
    for_: MaybePermanent = Field(None, alias="for")
    factor: Annotated[float, Field(ge=1.0, le=100.0)] = 2.0
    max: MaybePermanent = None
    reset_after: Duration = 86400.0

    @property
    def first_s(self) -> float | None:
        return self.for_ if "for_" in self.model_fields_set else DEFAULT_DURATIONS[self.do]

    @property
    def max_s(self) -> float | None:
        return self.max if "max" in self.model_fields_set else self.first_s

    @model_validator(mode="after")
    def _max_after_first(self) -> "EscalationSpec":
        if self.first_s is not None and self.max_s is not None and self.max_s < self.first_s:
            raise located_error(("max",), "must be at least 'for'")
        return self


class FailModesSpec(Doc):
    """What happens when the sanction store or the rate limiter cannot answer."""

    store: choice(FAIL_MODES["store"]) = "closed"
    rate_limit: choice(FAIL_MODES["rate_limit"]) = "open"


class TokenBudgetsSpec(Doc):
    """Tokens a day per user and per API key."""

    user: optional(_count(10**12)) = None
    key: optional(_count(10**12)) = None


class ScanLogSpec(Doc):
    """Another service's log the SOC tails and runs the request rules on (like fail2ban)."""

    path: matching(r"\S", "required: the log file to watch")
    format: choice(LOG_FORMATS) = "combined"
    ban: Any = None


class PolicySpec(Doc):
    """A policy file: what the firewall does about each class of finding."""

    name: matching(r"^[A-Za-z0-9_.-]{1,64}$", "expected a short name (letters, digits, _ . -)")
    extends: optional(str) = Field(None, description="a preset name or a path to the parent policy")
    description: str = ""
    mode: choice(MODES) = "enforce"
    security_mode: choice(SECURITY_MODES) = "security_aware"
    identity: IdentitySpec = Field(default_factory=IdentitySpec)
    allowlist: AllowlistSpec = Field(default_factory=AllowlistSpec)
    rule_overrides: dict[str, RuleOverrideSpec] = Field(default_factory=dict)
    rate_limits: list[RateLimitSpec] = Field(default_factory=list)
    responses: list[ResponseSpec] = Field(default_factory=list)
    escalations: list[EscalationSpec] = Field(default_factory=list)
    approval_required: many(choice((*ACTIONS, PERMANENT))) = Field(default_factory=list)
    block_severity: Severity = "high"
    fp_thresholds: FpThresholds = Field(default_factory=FpThresholds)
    fail_modes: FailModesSpec = Field(default_factory=FailModesSpec)
    token_budgets: TokenBudgetsSpec = Field(default_factory=TokenBudgetsSpec)
    response_action: choice(RESPONSE_ACTIONS) = "content_filter"
    allow_security_mode_header: bool = False
    canary: bool = True
    notify_targets: dict[str, Url] = Field(default_factory=dict)
    scan_logs: list[ScanLogSpec] = Field(default_factory=list)
    passthrough_endpoints: many(Annotated[Text, AfterValidator(_passthrough)]) = Field(
        default_factory=list, description='extra /v1 endpoints forwarded, as "METHOD path"')
    trusted_system_prompts: many(matching(r"^[0-9A-Fa-f]{64}$",
                                          "expected a SHA-256 digest (64 hex digits) of the prompt's UTF-8 text")) = Field(
        default_factory=list, description="SHA-256 digests of the operator's own system/developer prompts, "
                                          "set aside from inspection (none by default)")

    @model_validator(mode="after")
    def _known_notify_targets(self) -> "PolicySpec":
        for i, response in enumerate(self.responses):
            for j, entry in enumerate(response.do):
                if isinstance(entry, ActionMap) and entry.action()[0] == "notify":
                    target = entry.notify.target if entry.notify else "default"
                    if self.notify_targets and target != "default" and target not in self.notify_targets:
                        raise located_error(("responses", i, "do", j, "notify", "target"),
                                            f"unknown value {target!r} (expected one of: "
                                            f"{', '.join(sorted(self.notify_targets))})")
        return self


class _PolicyFileSchema(FileSchema):
    """Any list of a child policy may hold "$base" (where the parent's items go)."""

    def generate(self, schema: core_schema.CoreSchema, mode: Any = "validation") -> JsonSchemaValue:
        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for value in node.values():
                    walk(value)
                if node.get("type") == "array":
                    node["items"] = {"anyOf": [node.get("items", {}), {"const": BASE_MARKER}]}
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        out = super().generate(schema, mode)
        walk(out)
        return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema `llm-firewall schema policy` writes."""
    return PolicySpec.model_json_schema(schema_generator=_PolicyFileSchema)


# --- the validated document as the dataclasses the code reads ----------------------------------


def _action(entry: str | ActionMap) -> Action:
    kind, p = (entry, PARAMS[entry]()) if isinstance(entry, str) else entry.action()
    params: dict[str, Any] = {}
    if isinstance(p, TimedParams):
        params["duration_s"] = p.duration if "duration" in p.model_fields_set else DEFAULT_DURATIONS[kind]
    if isinstance(p, BlockIpRangeParams):
        params.update(prefix_v4=p.prefix_v4, prefix_v6=p.prefix_v6)
    elif isinstance(p, RateLimitParams):
        params.update(limit=p.limit, window_s=p.window, key=p.key, duration_s=p.for_)
    elif isinstance(p, NotifyParams):
        params["target"] = p.target
    elif isinstance(p, RedactParams):
        params.update({k: list(v) for k, v in (("threats", p.threats), ("categories", p.categories)) if v is not None})
    elif isinstance(p, FlagSessionParams) and p.note is not None:
        params["note"] = p.note
    return Action(kind, params)


def _when(w: WhenSpec, thresholds: FpThresholds) -> When:
    def fp(value: float | str | None) -> float | None:
        return getattr(thresholds, value) if isinstance(value, str) else value

    def opt(values: list[str] | None) -> frozenset[str] | None:
        return None if values is None else frozenset(values)

    severities = opt(w.severity)
    if w.min_severity is not None:
        severities = frozenset(s for s in SEVERITIES if SEVERITY_RANK[s] >= SEVERITY_RANK[w.min_severity])
    return When(threats=opt(w.threat), severities=severities, fp_below=fp(w.fp_below), fp_above=fp(w.fp_above),
                categories=opt(w.category), rules=opt(w.rule), roles=opt(w.role))


def to_policy(spec: PolicySpec, source_path: str, sha256: str) -> Policy:
    """The dataclasses of a validated policy (headers lower-cased, durations in seconds, named
    false-positive thresholds resolved, defaults filled in)."""
    ident = spec.identity
    thresholds = spec.fp_thresholds
    header = lambda ref: ref.split(":", 1)[1].lower()  # noqa: E731
    return Policy(
        name=spec.name, mode=spec.mode, security_mode=spec.security_mode,
        identity=IdentityConfig(header(ident.user), header(ident.session), header(ident.agent),
                                tuple(ident.trusted_proxies), ident.forwarded_header,
                                header(ident.trusted_user) if ident.trusted_user else None),
        allowlist=Allowlist(tuple(spec.allowlist.ips), tuple(spec.allowlist.users)),
        rule_overrides={k: v.model_dump(exclude_none=True) for k, v in spec.rule_overrides.items()},
        rate_limits=tuple(RateLimit(r.key, r.limit, r.window, r.unit) for r in spec.rate_limits),
        responses=tuple(ResponseRule(_when(r.when, thresholds), tuple(_action(a) for a in r.do), i)
                        for i, r in enumerate(spec.responses)),
        escalations=tuple(Escalation(count=frozenset(e.count), strikes=e.strikes, within_s=e.within, do=e.do,
                                     for_s=e.first_s, factor=e.factor, max_s=e.max_s,
                                     reset_after_s=e.reset_after, index=i)
                          for i, e in enumerate(spec.escalations)),
        approval_required=frozenset(spec.approval_required), block_severity=spec.block_severity,
        fp_thresholds=thresholds, fail_modes=spec.fail_modes.model_dump(),
        token_budgets=spec.token_budgets.model_dump(exclude_none=True), response_action=spec.response_action,
        allow_security_mode_header=spec.allow_security_mode_header, canary=spec.canary,
        notify_targets=dict(spec.notify_targets), description=spec.description.strip(),
        scan_logs=tuple({"path": s.path, "format": s.format, **({"ban": s.ban} if "ban" in s.model_fields_set else {})}
                        for s in spec.scan_logs),
        passthrough_endpoints=tuple(spec.passthrough_endpoints),
        trusted_system_prompts=frozenset(d.lower() for d in spec.trusted_system_prompts),
        source_path=source_path, sha256=sha256,
    )
