"""The guard: the gateway's own verdict on one request or answer, without forwarding anything.

For teams that keep their own gateway (LiteLLM, Portkey, Kong) and call the firewall as a
guardrail (`POST /api/guard`, api/guard.py). Nothing is decided here: a request goes through
`Gateway.screen_request` and an answer through `Gateway.judge_answer`, the very code the proxy
runs, so the guard and the proxy cannot disagree. This module only reads the call's envelope
and writes the verdict the caller acts on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_firewall.domain import Finding, Identity
from llm_firewall.gateway import BLOCKED_MESSAGE, WITHHELD, WITHHELD_MESSAGE, Gateway
from llm_firewall.proxy.openai_wire import WireError, validate_shape
from llm_firewall.proxy.target import KNOWN
from llm_firewall.redact import redact_secrets, redact_value

KINDS = ("request", "response")
ENDPOINTS = tuple(name for name, ep in KNOWN.items() if ep.body == "shaped")  # chat/completions, ...
_FIELDS = frozenset({"kind", "endpoint", "body", "identity", "dry_run"})
_ID_FIELDS = ("user", "session", "ip", "agent")


@dataclass(frozen=True, slots=True)
class GuardCall:
    """One guard call, checked: what to judge, for whom, and whether to enforce."""

    kind: str  # request | response
    endpoint: str  # one of ENDPOINTS
    body: dict[str, Any]
    identity: dict[str, str]  # the caller's word for its client: user, session, ip, agent
    dry_run: bool


def _bad(message: str, param: str, code: str = "invalid_request_error") -> WireError:
    return WireError(message, param=param, code=code)


def parse_call(envelope: dict[str, Any]) -> GuardCall:
    """The envelope's fields, typed; a WireError (400, naming the field) for anything else."""
    unknown = sorted(set(envelope) - _FIELDS)
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(unknown)}; the guard takes {', '.join(sorted(_FIELDS))}",
                   unknown[0], "unknown_field")
    kind = envelope.get("kind", "request")
    if kind not in KINDS:
        raise _bad(f"'kind' must be one of {', '.join(KINDS)}", "kind")
    endpoint = envelope.get("endpoint", "chat/completions")
    if isinstance(endpoint, str):
        endpoint = endpoint.removeprefix("/").removeprefix("v1/")
    if endpoint not in ENDPOINTS:
        raise _bad(f"'endpoint' must be one of {', '.join(ENDPOINTS)}", "endpoint")
    body = envelope.get("body")
    if not isinstance(body, dict):
        raise _bad("'body' must be the OpenAI request or answer, a JSON object", "body")
    who = envelope.get("identity") or {}
    if not isinstance(who, dict):
        raise _bad("'identity' must be an object with user, session, ip and agent strings", "identity")
    for key, value in who.items():
        if key not in _ID_FIELDS:
            raise _bad(f"unknown identity field {key!r}; use {', '.join(_ID_FIELDS)}", f"identity.{key}",
                       "unknown_field")
        if not isinstance(value, str):
            raise _bad(f"'identity.{key}' must be a string", f"identity.{key}")
    dry_run = envelope.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise _bad("'dry_run' must be a boolean", "dry_run")
    return GuardCall(kind, endpoint, body, dict(who), dry_run)


def finding_view(finding: Finding) -> dict[str, Any]:
    """A finding as the guard reports it; its excerpt redacted once more, whatever made it."""
    return {
        "rule_id": finding.rule_id,
        "title": finding.title,
        "threat": finding.threat,
        "category": finding.category,
        "severity": finding.severity,
        "role": finding.role,
        "path": finding.path,
        "fp_probability": finding.fp_probability,
        "recommendation": finding.recommendation,
        "explanation": [[name, round(weight, 4)] for name, weight in finding.fp_explanation],
        "excerpt": redact_secrets(finding.excerpt),
    }


async def judge(gateway: Gateway, call: GuardCall, identity: Identity, rid: str, *, size: int = 0,
                security_mode: str | None = None) -> dict[str, Any]:
    """The verdict on `call`: decision (allow, block, redact, refuse), the answer the proxy
    would have given in its place (`action`), findings, and what enforcement did. `size`: the
    call's bytes, counted against the policy's size limits as the proxy counts a body's;
    `security_mode`: the one the caller asked for (X-Security-Mode), as the proxy takes it."""
    if call.kind == "request":
        return await _judge_request(gateway, call, identity, rid, size, security_mode)
    return await _judge_answer(gateway, call, identity, rid)


def _verdict(gateway: Gateway, call: GuardCall, rid: str, decision: str, findings: list[Finding],
             action: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    policy = gateway.policy.current
    return {"decision": decision, "action": action, "findings": [finding_view(f) for f in findings],
            "kind": call.kind, "endpoint": call.endpoint, "dry_run": call.dry_run, "request_id": rid,
            "policy": {"name": policy.name, "mode": policy.mode}, **extra}


async def _judge_request(gateway: Gateway, call: GuardCall, identity: Identity, rid: str,
                         size: int, security_mode: str | None) -> dict[str, Any]:
    try:
        parsed = validate_shape(call.endpoint, call.body, max_messages=gateway.settings.limits.max_messages)
    except WireError as exc:  # named as the field of the envelope it is
        raise WireError(f"body: {exc.message}", param=f"body.{exc.param}" if exc.param else "body",
                        code=exc.code, status=exc.status) from None
    seen = await gateway.screen_request(parsed, identity, rid=rid, record=not call.dry_run, body_bytes=size,
                                        security_mode=security_mode)
    alert = seen.get("alert") or {}
    decided = seen.get("decision")
    extra = {"alert_id": alert.get("alert_id"), "actions_taken": redact_value(alert.get("remediation_taken", [])),
             "would_block": bool(decided and decided.would_block)}
    if seen["refused"]:
        action = {"status": seen["status"], "code": seen["code"], "message": seen["message"],
                  "retry_after": seen["retry_after"]}
        return _verdict(gateway, call, rid, "refuse", [], action, **extra)
    findings = seen["findings"]
    if seen["blocked"]:
        action = {"status": 400, "code": "content_policy_violation", "message": BLOCKED_MESSAGE}
        return _verdict(gateway, call, rid, "block", findings, action, **extra)
    if seen.get("redacted") is not None:
        return _verdict(gateway, call, rid, "redact", findings, body=seen["redacted"].body, **extra)
    return _verdict(gateway, call, rid, "allow", findings, **extra)


async def _judge_answer(gateway: Gateway, call: GuardCall, identity: Identity, rid: str) -> dict[str, Any]:
    if not gateway.soc_enabled:  # as the proxy: with the SOC off nothing is inspected
        return _verdict(gateway, call, rid, "allow", [])
    policy = gateway.policy.current
    answer = call.body
    if not call.dry_run:  # the proxy counts an answer's tokens towards the daily budgets
        gateway.usage.record(identity, answer.get("model") if isinstance(answer.get("model"), str) else None,
                             answer.get("usage") if isinstance(answer.get("usage"), dict) else None,
                             estimated_from=None)
    outcome, findings = await gateway.judge_answer(answer, call.endpoint, identity, policy, rid,
                                                   record=not call.dry_run)
    extra: dict[str, Any] = {"alert_raised": bool(findings) and not call.dry_run}  # judge_answer raises one then
    if outcome is WITHHELD:
        action = {"status": 502, "code": "content_policy_violation", "message": WITHHELD_MESSAGE}
        return _verdict(gateway, call, rid, "block", findings, action, **extra)
    if outcome is not None:
        return _verdict(gateway, call, rid, "redact", findings, body=outcome, **extra)
    return _verdict(gateway, call, rid, "allow", findings, **extra)
