"""The alert feed: builds alert records, keeps the recent ones, and fans them out live.

The admin API lists from here, the WebSocket subscribes here, and a shared-state backend (Redis)
can publish here so that every replica sees every replica's alerts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from llm_firewall.domain import SEVERITY_RANK, Finding, Identity
from llm_firewall.redact import redact_secrets, redact_value

_TITLES = {
    "prompt_injection": "Prompt injection attempt",
    "data_exfiltration": "Data exfiltration attempt",
    "system_manipulation": "System manipulation attempt",
    "privacy_violation": "Personal data in prompt",
    "malicious_input": "Malicious input",
    "secret_leakage": "Secret in model answer",
    "system_prompt_leakage": "System prompt leaked in answer",
    "rate_limit_abuse": "Rate-limit abuse",
}


def top_finding(findings: Sequence[Finding]) -> Finding:
    """The finding that speaks for an alert: most severe, then most certain (lowest FP)."""
    return max(findings, key=lambda f: (f.status == "stable", f.rank, -(f.fp_probability or 0.0)))


def build_alert(findings: Sequence[Finding], identity: Identity, *, direction: str, request_id: str,
                endpoint: str, now: float | None = None, replica: str | None = None) -> dict[str, Any]:
    """One alert per inspected message, carrying every finding; secrets are already redacted."""
    top = top_finding(findings)
    threats = sorted({f.threat for f in findings}, key=lambda t: -max(
        SEVERITY_RANK.get(f.severity, 0) for f in findings if f.threat == t))
    where = f"{top.role} text" if direction == "request" else "the model's answer"
    detail = f" (revealed after {', '.join(top.transforms)})" if top.transforms else ""
    return {
        "alert_id": f"alrt_{uuid.uuid4().hex[:16]}",
        "time": now if now is not None else time.time(),
        "direction": direction,
        "endpoint": endpoint,
        "request_id": request_id,
        "threat_type": top.threat,
        "threats": threats,
        "severity": top.severity,
        "category": top.category,
        "title": _TITLES.get(top.threat, top.title),
        "description": redact_secrets(f"{top.title} in {where}{detail}."),
        "rule_ids": sorted({f.rule_id for f in findings}),
        "fp_probability": top.fp_probability,
        "recommendation": top.recommendation,
        "findings": [f.to_dict() for f in findings],
        "remediation_taken": [],
        "ip": identity.ip,
        "user": identity.user,
        "session": identity.session,
        "api_key": identity.api_key_hash,
        "agent": identity.agent,
        "scope": identity.scope,  # the key or address its user and session are scoped to
        "replica": replica,
    }


def ws_view(alert: dict[str, Any]) -> dict[str, Any]:
    """The fields the live feed promises (`security_alert` event)."""
    keys = ("alert_id", "time", "severity", "threat_type", "title", "description", "fp_probability",
            "recommendation", "remediation_taken", "rule_ids", "ip", "user", "session", "direction")
    return {k: alert.get(k) for k in keys}


class AlertHub:
    """Recent alerts in memory plus live subscribers; bounded in both."""

    def __init__(self, keep: int = 2000, subscriber_queue: int = 256) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._by_id: dict[str, dict[str, Any]] = {}
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = subscriber_queue
        self.counts = {"alerts": 0, "false_positives": 0, "actions": 0}
        self.publish_hook: Callable[[dict[str, Any]], None] | None = None

    def add(self, alert: dict[str, Any], *, local: bool = True) -> None:
        """Record an alert; `local=False` for alerts that arrived from another replica."""
        if not self._remember(alert):
            return
        self.broadcast({"type": "security_alert", "data": ws_view(alert)})
        if local and self.publish_hook is not None:
            self.publish_hook(alert)

    def _remember(self, alert: dict[str, Any]) -> bool:
        if not alert.get("alert_id") or alert["alert_id"] in self._by_id:
            return False
        if len(self._recent) == self._recent.maxlen:
            self._by_id.pop(self._recent[0]["alert_id"], None)
        self._recent.append(alert)
        self._by_id[alert["alert_id"]] = alert
        self.counts["alerts"] += 1
        if (alert.get("fp_probability") or 0.0) >= 0.7:
            self.counts["false_positives"] += 1
        self.counts["actions"] += len(alert.get("remediation_taken") or ())
        return True

    def restore(self, alerts: Iterable[dict[str, Any]]) -> None:
        """Reload recent alerts (oldest first) from the audit trail after a restart."""
        for alert in alerts:
            self._remember(alert)

    def recent(self, limit: int = 100, **filters: Any) -> list[dict[str, Any]]:
        """The newest alerts matching `filters`; a user or session given as the client named it
        (`bob`) also matches it as scoped (`bob@203.0.113.9`)."""
        out = []
        for alert in reversed(self._recent):
            if all(v is None or alert.get(k) in (v, f"{v}@{alert.get('scope')}") for k, v in filters.items()):
                out.append(alert)
                if len(out) >= limit:
                    break
        return out

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send to every live viewer; whatever a producer put in, credentials never reach the page."""
        if not self._subscribers:
            return
        message = redact_value(message)
        for queue in list(self._subscribers):
            if queue.full():  # a slow viewer loses its oldest message, never slows a request
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    pass
            queue.put_nowait(message)
