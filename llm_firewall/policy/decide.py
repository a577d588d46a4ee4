"""The decision table: findings + identity + policy -> what to do. Pure, no I/O, no clock.

Kept pure so that every preset can be checked as a table in tests and so that the inline path
pays only for a few comparisons. State (strikes, sanctions, limits) lives in llm_firewall.enforce.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from llm_firewall.domain import SEVERITY_RANK, Finding, Identity
from llm_firewall.enforce.identity import is_allowlisted, override_subject
from llm_firewall.policy.model import Action, Escalation, Policy, ResponseRule

__all__ = ["Action", "Decision", "address_strike_subject", "decide", "escalation_step", "ladder_duration",
           "ladder_subject", "ladders_for", "strike_subject"]

LOG = Action("log", {})
# Action kind -> the identity field it is aimed at (None: the request itself).
_TARGET = {
    "block_ip": "ip",
    "block_ip_range": "ip",
    "terminate_session": "session",
    "flag_session": "session",
    "suspend_user": "user",
    "isolate_agent": "agent",  # falls back to the API key
}
# Actions that sanction a user or session (ended sessions, suspensions), as opposed to marking one.
_SANCTIONED = frozenset({"terminate_session", "suspend_user"})


@dataclass
class Decision:
    blocked: bool
    actions: list[Action]  # to execute now (enforce mode); only `log` in monitor mode
    pending: list[Action] = field(default_factory=list)  # need an admin's approval first
    mode: str = "enforce"
    would_block: bool = False  # what enforce mode would do (equals `blocked` in enforce mode)
    would_actions: list[Action] = field(default_factory=list)  # every action enforce mode would take
    reasons: list[str] = field(default_factory=list)
    matched_rules: list[str] = field(default_factory=list)
    strikes: list[str] = field(default_factory=list)  # threats that count towards escalation ladders
    allowlisted: bool = False

    @property
    def redact(self) -> bool:
        return any(a.kind == "redact" for a in self.actions)

    def to_dict(self) -> dict:
        return {
            "blocked": self.blocked,
            "would_block": self.would_block,
            "mode": self.mode,
            "actions": [a.to_dict() for a in self.actions],
            "pending": [a.to_dict() for a in self.pending],
            "would_actions": [a.to_dict() for a in self.would_actions],
            "reasons": list(self.reasons),
            "matched_rules": list(self.matched_rules),
            "strikes": list(self.strikes),
            "allowlisted": self.allowlisted,
        }


def _effective(finding: Finding, policy: Policy) -> Finding | None:
    """Apply rule_overrides; None when the rule is disabled."""
    override = policy.rule_overrides.get(finding.rule_id)
    if not override:
        return finding
    if override.get("enabled") is False:
        return None
    changes = {k: override[k] for k in ("severity", "status") if k in override}
    return replace(finding, **changes) if changes else finding


def _matches(rule: ResponseRule, f: Finding, fp: float) -> bool:
    w = rule.when
    return (
        (w.threats is None or f.threat in w.threats)
        and (w.severities is None or f.severity in w.severities)
        and (w.fp_below is None or fp < w.fp_below)
        and (w.fp_above is None or fp >= w.fp_above)
        and (w.categories is None or (f.category or "") in w.categories)
        and (w.rules is None or f.rule_id in w.rules)
        and (w.roles is None or f.role in w.roles)
    )


def _aim(action: Action, identity: Identity) -> Action | None:
    """Bind an action to the identity it concerns; None when the identity lacks that field.

    Every sanction lands on a subject the client cannot choose: a user or session it merely
    names is scoped to its key or address (see `Identity`), and a caller that names none is
    suspended (or its sessions ended) by that key or address itself."""
    if action.kind == "rate_limit":
        return replace(action, subject=override_subject(identity, action.params.get("key", "client")))
    target = _TARGET.get(action.kind)
    if target is None:
        return action
    value = getattr(identity, target)
    if value is None and action.kind == "isolate_agent":
        value = identity.api_key_hash
    if value is None and action.kind in _SANCTIONED:
        value = identity.anchor_for(target)
    return replace(action, subject=value) if value else None


def decide(policy: Policy, findings: Sequence[Finding], identity: Identity) -> Decision:
    """Map findings to actions: the first matching response rule per finding, unioned.

    Experimental or disabled rules never enforce; a false-positive probability at or above
    `monitor_above` only logs; allowlisted identities only log; with no matching rule a finding at
    or above `block_severity` and below `block_below` is refused. Monitor mode returns only `log`
    and records the rest in `would_*` for the audit trail.
    """
    th = policy.fp_thresholds
    block_rank = SEVERITY_RANK[policy.block_severity]
    reasons: list[str] = []
    matched: list[str] = []
    chosen: list[Action] = []
    strikes: list[str] = []
    allowlisted = bool(findings) and is_allowlisted(identity, policy)

    active = [e for f in findings if (e := _effective(f, policy)) is not None]
    # Strongest first so that its actions (and their parameters) win de-duplication.
    active.sort(key=lambda f: (-f.rank, f.fp_probability or 0.0))
    for f in active:
        fp = f.fp_probability if f.fp_probability is not None else 0.0
        label = f"{f.rule_id} {f.threat}/{f.severity} fp={fp:.2f}"
        if f.rule_id not in matched:
            matched.append(f.rule_id)
        if f.status == "experimental":
            reasons.append(f"{label}: experimental rule, logged only")
            continue
        if fp >= th.monitor_above:
            reasons.append(f"{label}: likely false positive (>= {th.monitor_above}), logged only")
            continue
        if allowlisted:
            reasons.append(f"{label}: identity allowlisted, logged only")
            continue
        rule = next((r for r in policy.responses if _matches(r, f, fp)), None)
        if rule is not None:
            actions = list(rule.do)
            reasons.append(f"{label}: responses[{rule.index}] -> {', '.join(a.kind for a in actions)}")
        elif f.rank >= block_rank and fp < th.block_below:
            actions = [Action("block_request", {})]
            reasons.append(f"{label}: at or above block_severity {policy.block_severity} -> block_request")
        else:
            actions = []
            reasons.append(f"{label}: no response rule, logged only")
        # Only a finding the policy acts on is an offence: one it merely logs (an investigate-band
        # hint, a rule with no response) must not add up to a suspension of an honest client.
        if fp < th.block_below and f.threat not in strikes and any(a.kind != "log" for a in actions):
            strikes.append(f.threat)
        for action in actions:
            aimed = _aim(action, identity)
            if aimed is None:
                reasons.append(f"{label}: {action.kind} skipped, no {_TARGET.get(action.kind)} identity")
            elif aimed.kind != "log" and all((a.kind, a.subject) != (aimed.kind, aimed.subject) for a in chosen):
                chosen.append(aimed)

    now_actions = [a for a in chosen if not policy.needs_approval(a)]
    pending = [a for a in chosen if policy.needs_approval(a)]
    would_block = any(a.kind == "block_request" for a in now_actions)
    if allowlisted:
        strikes = []
    if policy.mode == "monitor":
        return Decision(
            blocked=False, actions=[LOG] if findings else [], pending=[], mode="monitor",
            would_block=would_block, would_actions=chosen, reasons=reasons, matched_rules=matched,
            strikes=strikes, allowlisted=allowlisted,
        )
    if findings and not now_actions:
        now_actions = [LOG]
    return Decision(
        blocked=would_block, actions=now_actions, pending=pending, mode="enforce",
        would_block=would_block, would_actions=chosen, reasons=reasons, matched_rules=matched,
        strikes=strikes, allowlisted=allowlisted,
    )


# ----------------------------------------------------------------------------------------------
# Escalation ladders


def ladders_for(policy: Policy, threat: str) -> list[Escalation]:
    return [ladder for ladder in policy.escalations if threat in ladder.count]


def ladder_subject(ladder: Escalation, identity: Identity) -> str | None:
    """The identity value a ladder's sanction is aimed at (the user for suspend_user, ...)."""
    aimed = _aim(Action(ladder.do, {}), identity)
    return aimed.subject if aimed else None


def strike_subject(ladder: Escalation, identity: Identity, subject: str) -> str:
    """Whom a ladder's strikes count against: the key or address behind a scoped user or session
    (so naming a new id for each offence still climbs the ladder), else `subject` itself."""
    target = _TARGET.get(ladder.do)
    anchor = identity.anchor_for(target) if target else None
    return anchor or subject


def address_strike_subject(ladder: Escalation, identity: Identity) -> str | None:
    """Where a ladder's strikes count a second time, when they count against an API key: the
    client's address (``*@203.0.113.9``), so a new key per offence still climbs the ladder and
    the sanction then falls on the address; None otherwise."""
    target = _TARGET.get(ladder.do)
    return identity.address_anchor_for(target) if target else None


# The longest timed sanction, whatever the level: a ladder capped at `permanent` keeps doubling,
# and a duration past this (or past what a float holds) would break expiry times and dates.
MAX_TIMED_S = 100 * 365 * 86400.0


def ladder_duration(ladder: Escalation, level: int) -> float | None:
    """Duration of the sanction at `level` (1 = first time): for * factor^(level-1), capped."""
    if ladder.for_s is None:
        return None
    cap = MAX_TIMED_S if ladder.max_s is None else min(ladder.max_s, MAX_TIMED_S)
    try:
        duration = ladder.for_s * ladder.factor ** max(level - 1, 0)
    except OverflowError:  # factor 2 overflows a float after ~1,000 levels
        return cap
    return min(duration, cap)


def escalation_step(ladder: Escalation, strikes: int, previous_level: int, subject: str) -> Action | None:
    """The sanction a ladder imposes after `strikes` strikes within its window, or None.

    `previous_level` is how many times this ladder already fired for the subject (remembered for
    `reset_after`), so durations grow: 15 min, 30 min, 1 h, ... up to the cap.
    """
    if strikes < ladder.strikes:
        return None
    level = previous_level + 1
    return Action(
        ladder.do,
        {"duration_s": ladder_duration(ladder, level), "level": level, "ladder": ladder.ladder_id},
        subject,
    )
