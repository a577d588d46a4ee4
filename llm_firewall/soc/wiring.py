"""Connects the SOC pipeline to the running firewall: alerts in, enforcement and audit out.

The pipeline knows nothing of aiohttp or the store; this module adapts the gateway's alert
records to the pipeline's events, and the remediator's playbook actions to the Enforcer.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llm_firewall.config import Settings
from llm_firewall.domain import Identity
from llm_firewall.enforce.identity import subject
from llm_firewall.policy.model import Action as PolicyAction
from llm_firewall.soc.llm_analyst import LlmAnalyst
from llm_firewall.soc.logtail import LogSource
from llm_firewall.soc.pipeline import SocPipeline
from llm_firewall.soc.playbook import Playbook


def soc_event(alert: dict[str, Any]) -> dict[str, Any]:
    """The gateway's alert record as the builder expects it."""
    return {
        "type": "alert", "alert_id": alert["alert_id"], "threat": alert["threat_type"],
        "severity": alert["severity"], "title": alert["title"], "rule_ids": alert["rule_ids"],
        "fp_probability": alert.get("fp_probability"), "recommendation": alert.get("recommendation"),
        "category": alert.get("category"), "ts": alert["time"],
        "excerpt": (alert.get("findings") or [{}])[0].get("excerpt", ""),
        "identity": {k: v for k, v in (("ip", alert.get("ip")), ("user", alert.get("user")),
                                        ("session", alert.get("session")), ("key", alert.get("api_key")),
                                        ("agent", alert.get("agent")), ("scope", alert.get("scope"))) if v},
        "actions_taken": alert.get("remediation_taken") or [],
    }


def _identity(pb: Playbook) -> Identity:
    """The alert's identity; its user and session are already scoped (``bob@203.0.113.9``), and
    the scope lets a sanction on one also hold the key or address (see `Enforcer`)."""
    ident = pb.identity or {}
    return Identity(ip=ident.get("ip", ""), api_key_hash=ident.get("key"), user=ident.get("user"),
                    session=ident.get("session"), agent=ident.get("agent"),
                    scope=ident.get("scope"))




def build_pipeline(app: web.Application, settings: Settings, gateway: Any) -> SocPipeline:
    from llm_firewall.appkeys import STATE

    state = app[STATE]
    audit = state["audit"]
    enforcer = gateway.enforcer

    async def remediate(pb: Playbook) -> list[dict[str, Any]]:
        identity = _identity(pb)
        out = []
        for action in pb.actions:
            kind, value = next(iter(action.subject.items()), (None, None))
            target = subject(kind, value) if action.kind == "rate_limit" and kind else value
            policy_action = PolicyAction(action.kind, dict(action.params), target)
            if action.requires_approval:
                result = await enforcer.request_approval(policy_action, identity, pb.alert_id,
                                                         gateway.policy.current)
            else:
                result = await enforcer.execute(policy_action, identity, pb.alert_id, pb.reason,
                                                claim_key=f"soc:{action.key}", rule_ids=pb.rule_ids)
            out.append(result)
        return out

    def on_alert(event: dict[str, Any]) -> None:
        if event.get("type") == "soc_verdict":
            gateway.alerts.broadcast({"type": "soc_verdict", "data": event})
            return
        alert = {
            "alert_id": str(event.get("alert_id")), "time": event.get("ts"), "direction": "soc",
            "threat_type": event.get("threat", "unknown"), "threats": [event.get("threat")],
            "severity": event.get("severity", "medium"), "title": event.get("title", "SOC alert"),
            "description": event.get("description") or event.get("title", ""),
            "rule_ids": event.get("rule_ids") or [], "fp_probability": event.get("fp_probability"),
            "recommendation": event.get("recommendation"), "findings": [], "remediation_taken": [],
            "category": event.get("category"), "source": event.get("source"),
            **{k: (event.get("identity") or {}).get(k) for k in ("ip", "user", "session")},
        }
        gateway.alerts.add(alert)

    llm = None
    if settings.analyst_base_url:
        llm = LlmAnalyst(base_url=settings.analyst_base_url, api_key=settings.analyst_api_key or "unused",
                         model=settings.analyst_model)
    policy = gateway.policy.current
    specs = {spec["path"]: spec for spec in (*policy.scan_logs, *settings.watch_logs)}  # env wins per path
    sources = [LogSource(**spec) for spec in specs.values()]  # type: ignore[arg-type]
    return SocPipeline(
        remediate=remediate, audit_append=audit.append, on_alert=on_alert, llm=llm,
        log_sources=sources,
        scan_line=(lambda text: gateway.inspector.inspect_text(text, role="user")) if sources else None,
        notify_targets=tuple(settings.webhook_urls) + tuple(policy.notify_targets.values()),
        approval_required=tuple(policy.approval_required),
    )
