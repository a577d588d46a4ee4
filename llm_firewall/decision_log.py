"""Decision logs: one JSON line per alert, sanction, refusal and admin action, for a log-based SIEM.

Why a log of its own: the audit trail is a database the admin API queries; a SIEM ingests log
lines. Each line is an ECS-style document (`@timestamp`, `event.*`, `source.ip`, `user.id`,
`rule.*`), built from the record the audit trail stores (already scrubbed of secrets there) or,
for refusals, which are not audited one by one, from the refusal itself. The lines go to the
`llm_firewall.decision` logger: on by default at INFO, one bare JSON object per line on stderr
whatever the log format, so a shipper can parse every line without a prefix.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson

from llm_firewall.logs import RedactingFilter

log = logging.getLogger("llm_firewall.decision")

# ECS `event.severity` is a number; the firewall's levels keep their names under `llm_firewall`.
SEVERITY_NUMBER = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}

# Audit kinds that are decisions worth a line, with their ECS category and type.
_ADMIN = {"soc_toggle", "sanction_released", "approval_decided", "policy_reloaded", "policy_reload_failed"}


def setup(enabled: bool = True) -> None:
    """Send decision lines to stderr as bare JSON (or nowhere when disabled)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler] if enabled else [logging.NullHandler()]
    log.propagate = False
    log.setLevel(logging.INFO)


def _base(action: str, category: str, kind: str, outcome: str, now: float | None = None) -> dict[str, Any]:
    ts = time.time() if now is None else now
    return {"@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z",
            "event": {"kind": kind, "category": [category], "action": action, "outcome": outcome,
                      "module": "llm_firewall", "dataset": "llm_firewall.decision"}}


def _who(doc: dict[str, Any], identity: Mapping[str, Any] | None) -> None:
    if not identity:
        return
    if identity.get("ip"):
        doc["source"] = {"ip": identity["ip"]}
    if identity.get("user"):
        doc["user"] = {"id": identity["user"]}
    extra = {k: identity[k] for k in ("session", "agent") if identity.get(k)}
    key = identity.get("api_key_hash") or identity.get("api_key") or identity.get("key")
    if key:
        extra["api_key_hash"] = key
    if extra:
        doc.setdefault("llm_firewall", {}).update(extra)


def from_audit(kind: str, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The decision line for one audit record (already scrubbed), or None for kinds that are not
    decisions (intents of actions, startup, decisions tables)."""
    if kind == "alert":
        severity = str(record.get("severity") or "")
        doc = _base("alert", "intrusion_detection", "alert",
                    "success" if record.get("remediation_taken") else "unknown", record.get("time"))
        doc["event"].update(id=record.get("alert_id"), severity=SEVERITY_NUMBER.get(severity, 0),
                            reason=record.get("description"))
        rule_ids = list(record.get("rule_ids") or [])
        doc["rule"] = {"id": rule_ids[0] if len(rule_ids) == 1 else rule_ids, "name": record.get("title"),
                       "category": record.get("threat_type")}
        doc["http"] = {"request": {"id": record.get("request_id")}}
        doc["llm_firewall"] = {"severity": severity, "direction": record.get("direction"),
                               "endpoint": record.get("endpoint"), "fp_probability": record.get("fp_probability"),
                               "recommendation": record.get("recommendation"),
                               "actions": [a.get("action") for a in record.get("remediation_taken") or []
                                           if isinstance(a, Mapping)]}
        _who(doc, {k: record.get(k) for k in ("ip", "user", "session", "agent", "api_key")})
        return doc
    if kind == "action" and record.get("phase") in ("result", "would"):
        status = str(record.get("status") or "")
        doc = _base(str(record.get("action")), "intrusion_detection", "event",
                    {"done": "success", "would": "unknown", "duplicate": "success"}.get(status, "failure"))
        doc["event"]["type"] = ["denied"]
        doc["llm_firewall"] = {"alert_id": record.get("alert_id"), "subject": record.get("subject"), "status": status}
        ident = record.get("identity")
        _who(doc, ident if isinstance(ident, Mapping) else None)
        return doc
    if kind == "approval_requested":
        doc = _base("approval_requested", "intrusion_detection", "event", "unknown")
        doc["llm_firewall"] = {"alert_id": record.get("alert_id"), "approval_id": record.get("approval_id")}
        ident = record.get("identity")
        _who(doc, ident if isinstance(ident, Mapping) else None)
        return doc
    if kind in _ADMIN:
        doc = _base(kind, "configuration", "event", "failure" if kind == "policy_reload_failed" else "success")
        doc["event"]["type"] = ["change"]
        doc["llm_firewall"] = {k: v for k, v in record.items() if k != "payload"}
        return doc
    return None


def refusal(code: str, status: int, identity: Mapping[str, Any], request_id: str, endpoint: str) -> dict[str, Any]:
    """The line for a request refused before inspection (a sanction in force, a rate limit)."""
    doc = _base("request_refused", "web", "event", "failure")
    doc["event"].update(type=["denied"], reason=code)
    doc["http"] = {"request": {"id": request_id}, "response": {"status_code": status}}
    doc["url"] = {"path": f"/v1/{endpoint}" if endpoint else None}
    _who(doc, identity)
    return doc


def emit(doc: dict[str, Any] | None) -> None:
    if doc is not None and log.isEnabledFor(logging.INFO):
        log.info(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS).decode())
