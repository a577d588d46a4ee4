"""Analyst agent: groups alerts into incidents, settles the uncertain ones, writes playbooks.

An incident collects the alerts of one identity (session, else user, else API key, else IP)
within a time window. Alerts in the "investigate" band are settled by context — several
alerts in one incident corroborate each other — or by the optional LLM second opinion. A
confirmed alert yields a playbook of the actions its policy asked for; an incident never gets
the same action twice, so a flood of hostile lines from one client becomes one ban.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from cachetools import TTLCache

from llm_firewall.domain import SEVERITY_RANK
from llm_firewall.soc.llm_analyst import Verdict
from llm_firewall.soc.playbook import INLINE_ONLY, Playbook, PlaybookError, normalise_action

log = logging.getLogger(__name__)
_ids = itertools.count(1)


@dataclass(slots=True)
class Incident:
    incident_id: str
    subject: str  # "session:abc", "user:bob", "ip:203.0.113.7"
    identity: dict[str, str]
    opened_at: float
    updated_at: float
    alert_ids: list[str] = field(default_factory=list)  # most recent 50
    alert_count: int = 0
    threats: dict[str, int] = field(default_factory=dict)
    rules: set[str] = field(default_factory=set)
    severity: str = "low"
    recommendation: str = "monitor"
    actions_issued: set[str] = field(default_factory=set)
    playbooks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "subject": self.subject,
            "identity": dict(self.identity),
            "opened_at": self.opened_at,
            "updated_at": self.updated_at,
            "alert_count": self.alert_count,
            "alert_ids": list(self.alert_ids[-10:]),
            "threats": dict(self.threats),
            "rules": sorted(self.rules)[:20],
            "severity": self.severity,
            "recommendation": self.recommendation,
            "playbooks": list(self.playbooks[-10:]),
        }


@dataclass(slots=True)
class Decision:
    """What the analyst concluded about one alert."""

    alert: dict[str, Any]
    incident: Incident
    recommendation: str
    reason: str
    second_opinion: Verdict | None = None
    playbook: Playbook | None = None

    @property
    def changed(self) -> bool:
        return self.recommendation != self.alert.get("recommendation")


def incident_subject(identity: dict[str, str]) -> str:
    for name in ("session", "user", "key", "ip", "agent"):
        if identity.get(name):
            return f"{name}:{identity[name]}"
    return "unknown"


class Analyst:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        window_s: float = 600.0,
        max_incidents: int = 10_000,
        corroborate_after: int = 3,
        confidence_threshold: float = 0.6,
        confirm_actions: list[Any] | None = None,
        notify_targets: tuple[str, ...] = (),
        notify_fmt: str = "json",
        notify_min_severity: str = "high",
        approval_required: frozenset[str] = frozenset(),
    ) -> None:
        self._clock = clock
        self.window_s = window_s
        self.incidents: TTLCache[str, Incident] = TTLCache(max_incidents, window_s, timer=clock)
        self.corroborate_after = corroborate_after
        self.confidence_threshold = confidence_threshold
        self.confirm_actions = list(confirm_actions or [])
        self.notify_targets = tuple(notify_targets)
        self.notify_fmt = notify_fmt
        self.notify_min_rank = SEVERITY_RANK.get(notify_min_severity, 3)
        self.approval_required = frozenset(approval_required)
        self.counts = {"alerts": 0, "incidents": 0, "playbooks": 0, "changed_by_llm": 0,
                       "corroborated": 0, "invalid_actions": 0}

    # -- incidents -------------------------------------------------------------------------
    def incident_for(self, alert: dict[str, Any]) -> Incident:
        identity = alert.get("identity") or {}
        subject = incident_subject(identity)
        now = self._clock()
        inc = self.incidents.get(subject)
        if inc is None:
            inc = Incident(f"inc-{next(_ids)}-{int(now)}", subject, dict(identity), now, now)
            self.counts["incidents"] += 1
        inc.updated_at = now
        inc.identity.update(identity)
        inc.alert_count += 1
        inc.alert_ids.append(str(alert.get("alert_id")))
        del inc.alert_ids[:-50]
        threat = str(alert.get("threat"))
        inc.threats[threat] = inc.threats.get(threat, 0) + 1
        if len(inc.rules) < 100:
            inc.rules.update(alert.get("rule_ids") or ())
        if SEVERITY_RANK.get(alert.get("severity", ""), 0) > SEVERITY_RANK.get(inc.severity, 0):
            inc.severity = alert["severity"]
        self.incidents[subject] = inc  # re-insert: the window restarts with every alert
        return inc

    def needs_opinion(self, alert: dict[str, Any], incident: Incident) -> bool:
        return alert.get("recommendation") == "investigate" and incident.alert_count < self.corroborate_after

    # -- decisions -------------------------------------------------------------------------
    def decide(self, alert: dict[str, Any], incident: Incident, opinion: Verdict | None = None) -> Decision:
        """Settle the alert's recommendation and, when it ends at 'block', write the playbook."""
        self.counts["alerts"] += 1
        rec = str(alert.get("recommendation", "investigate"))
        reason = f"recommendation from the {alert.get('source', 'inline')} path"
        if rec == "investigate" and incident.alert_count >= self.corroborate_after:
            rec, reason = "block", f"corroborated by {incident.alert_count} alerts in incident {incident.incident_id}"
            self.counts["corroborated"] += 1
        elif rec == "investigate" and opinion is not None and opinion.confidence >= self.confidence_threshold:
            rec = "block" if opinion.verdict == "true_positive" else "monitor"
            reason = f"second opinion: {opinion.verdict} ({opinion.confidence:.2f}): {opinion.reason}"
            self.counts["changed_by_llm"] += 1
        if _rec_rank(rec) > _rec_rank(incident.recommendation):
            incident.recommendation = rec
        decision = Decision(alert, incident, rec, reason, opinion)
        if rec == "block":
            decision.playbook = self.playbook(alert, incident, reason)
        return decision

    def playbook(self, alert: dict[str, Any], incident: Incident, reason: str) -> Playbook | None:
        identity = dict(alert.get("identity") or {})
        specs = list(alert.get("soc_actions") or self.confirm_actions)
        if self.notify_targets and SEVERITY_RANK.get(alert.get("severity", ""), 0) >= self.notify_min_rank:
            specs += [{"notify": {"target": t, "fmt": self.notify_fmt}} for t in self.notify_targets]
        actions = []
        for i, spec in enumerate(specs):
            if _kind_of(spec) in INLINE_ONLY:
                continue
            try:
                action = normalise_action(spec, identity, where=f"alert {alert.get('alert_id')} soc_actions[{i}]")
            except PlaybookError as exc:
                self.counts["invalid_actions"] += 1
                log.warning("analyst dropped an action: %s", exc)
                continue
            if action.canonical() in incident.actions_issued:
                continue  # this incident already asked for exactly this
            action.requires_approval = action.kind in self.approval_required
            actions.append(action)
        if not actions:
            return None
        incident.actions_issued.update(a.canonical() for a in actions)
        pb = Playbook(
            incident_id=incident.incident_id,
            alert_id=str(alert.get("alert_id")),
            actions=actions,
            reason=reason,
            threat=str(alert.get("threat", "")),
            severity=str(alert.get("severity", "")),
            source=str(alert.get("source", "inline")),
            identity=identity,
            created_at=self._clock(),
            rule_ids=tuple(str(r) for r in alert.get("rule_ids") or ()),
        )
        incident.playbooks.append(pb.playbook_id)
        self.counts["playbooks"] += 1
        return pb

    def status(self, recent: int = 20) -> dict[str, Any]:
        incs = sorted(self.incidents.values(), key=lambda i: i.updated_at, reverse=True)
        return {**self.counts, "open_incidents": len(incs), "recent": [i.to_dict() for i in incs[:recent]]}


def _rec_rank(rec: str) -> int:
    return {"monitor": 1, "investigate": 2, "block": 3}.get(rec, 0)


def _kind_of(spec: Any) -> str | None:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        return spec.get("kind") if "kind" in spec else next(iter(spec), None)
    return getattr(spec, "kind", None)
