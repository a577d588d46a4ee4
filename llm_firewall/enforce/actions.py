"""Turns decisions into enforcement state, and enforcement state into refusals.

`check` runs on every request before any inspection (sanctions, then rate limits); `apply` runs
after a decision with findings: it executes each action once per alert (idempotency claims),
counts strikes and climbs escalation ladders, queues what needs an admin's approval, and writes
the intent before and the result after every action to the audit trail. In monitor mode it only
audits what it would have done.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Awaitable, Callable, Mapping, Sequence

from llm_firewall.audit import AuditLog
from llm_firewall.domain import Identity
from llm_firewall.enforce.identity import anchor_of, as_network, is_allowlisted, subject_for, subjects
from llm_firewall.enforce.state import Approval, Sanction, Store, StoreUnavailable
from llm_firewall.policy.decide import (Decision, address_strike_subject, escalation_step, ladder_subject, ladders_for,
                                        strike_subject)
from llm_firewall.policy.model import Action, Policy, RateLimit

log = logging.getLogger(__name__)

CLAIM_TTL_S = 86400.0
FLAG_TTL_S = 86400.0  # a flagged session stays listed for the SOC this long
Notifier = Callable[[Action, dict], Awaitable[None]]

# sanction kind -> (status, code, message)
_REFUSALS = {
    "ip": (403, "ip_blocked", "Requests from your address are blocked."),
    "session": (403, "session_terminated", "This session has been terminated."),
    "user": (403, "user_suspended", "This user is suspended."),
    "agent": (403, "agent_isolated", "This agent is isolated."),
    "key": (403, "agent_isolated", "This API key is isolated."),
}
# action kind -> sanction kind it creates
_SANCTION_OF = {
    "block_ip": "ip",
    "block_ip_range": "ip",
    "terminate_session": "session",
    "suspend_user": "user",
    "isolate_agent": "agent",
}


@dataclass(frozen=True)
class Refusal:
    status: int  # 403 | 429 | 503
    code: str  # ip_blocked | user_suspended | session_terminated | agent_isolated | rate_limit_exceeded | enforcement_unavailable
    message: str
    retry_after: float | None = None  # seconds; None for sanctions without expiry

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message, "retry_after": self.retry_after}


class Enforcer:
    def __init__(self, store: Store, audit: AuditLog, *, clock: Callable[[], float], notifier: Notifier | None = None):
        self.store = store
        self.audit = audit
        self.clock = clock
        self.notifier = notifier

    # ------------------------------------------------------------------ inline check

    async def check(self, identity: Identity, policy: Policy) -> Refusal | None:
        """Refuse a sanctioned or over-limit client; None lets the request through.

        Store failures follow the policy's fail modes: sanctions fail closed (503) by default,
        rate limits fail open.
        """
        if self.inline:
            return self.check_now(identity, policy)
        now = self.clock()
        allowlisted = is_allowlisted(identity, policy)
        found = None
        quick = getattr(self.store, "check_quick", None)  # one round trip for an ordinary request
        if quick is not None and policy.request_limits and not allowlisted:
            try:
                found = await quick(identity, now, _limit_hits(policy.request_limits, identity))
            except Exception:  # noqa: BLE001 - the step-by-step lookup below applies the fail modes
                pass
        if found is not None and found.charged:
            return None if found.limited is None else _rate_refusal(found.limited.retry_after)
        if found is not None:  # something exists: decide from what the script read, step by step
            sanction = found.sanction
        else:
            try:
                sanction = await self.store.active_sanction(identity, now)
            except Exception as exc:  # noqa: BLE001 - the store is external (Redis): never a 500
                _log_store_failure("sanction lookup", exc)
                if policy.fail_modes.get("store", "closed") == "closed":
                    return Refusal(503, "enforcement_unavailable", "Enforcement state is unavailable; try again shortly.", 5.0)
                sanction = None
        if sanction is not None:
            return _sanction_refusal(sanction, now)
        if allowlisted:
            return None
        try:
            return await self._rate_limits(identity, policy, now)
        except Exception as exc:  # noqa: BLE001
            return _rate_limit_failure(policy, "rate limit check", exc)

    async def sanctioned(self, identity: Identity) -> Refusal | None:
        """The refusal an active sanction on this identity calls for, counting nothing against
        any limit (the guard API's dry runs). A store failure answers None: a dry run enforces
        nothing, so it has nothing to fail closed on."""
        now = self.clock()
        try:
            sanction = await self.store.active_sanction(identity, now)
        except Exception as exc:  # noqa: BLE001 - the store is external (Redis): never a 500
            _log_store_failure("sanction lookup", exc)
            return None
        return None if sanction is None else _sanction_refusal(sanction, now)

    @property
    def inline(self) -> bool:
        """True when the store answers synchronously (in memory): then `check_now` is the check."""
        return getattr(self.store, "answers_inline", False)

    def check_now(self, identity: Identity, policy: Policy) -> Refusal | None:
        """`check` without an await per lookup, for a store that answers inline.

        Same order and outcomes as `check`; an in-memory store cannot be unavailable, so the
        fail modes do not arise. Called on every request, hence the shortcuts: no override
        lookups when no override exists, one bucket key per rate limit."""
        store = self.store
        now = self.clock()
        sanction = store.active_sanction_now(identity, now)
        if sanction is not None:
            return _sanction_refusal(sanction, now)
        if is_allowlisted(identity, policy):
            return None
        if store.has_overrides():
            for subj in subjects(identity):
                override = store.override_limit_now(subj, now)
                if override is not None:
                    result = store.hit_now(f"override:{subj}", override[0], override[1], now)
                    if not result.allowed:
                        return _rate_refusal(result.retry_after)
        limits = policy.request_limits
        refused = store.hit_all_now(_limit_hits(limits, identity), now) if limits else None
        return None if refused is None else _rate_refusal(refused.retry_after)

    async def charge(self, identity: Identity, policy: Policy, body_bytes: int) -> Refusal | None:
        """Count a request body's size (KiB, rounded up) against the policy's `unit: kib` limits,
        once the body is read; a refusal when one of them is used up.

        Inspection costs CPU in proportion to the text: request counts alone let a client send
        a few bodies of 4 MiB a second. Store failures follow the rate-limit fail mode."""
        limits = policy.size_limits
        if not limits or is_allowlisted(identity, policy):
            return None
        try:
            return await self._hit_limits(limits, identity, self.clock(), max(1, -(-body_bytes // 1024)))
        except Exception as exc:  # noqa: BLE001 - the store is external (Redis): never a 500
            return _rate_limit_failure(policy, "size limit charge", exc)

    async def _rate_limits(self, identity: Identity, policy: Policy, now: float) -> Refusal | None:
        for subj in subjects(identity):  # limits imposed after an offence come first
            override = await self.store.override_limit(subj, now)
            if override is not None:
                result = await self.store.hit(f"override:{subj}", override[0], override[1], now)
                if not result.allowed:
                    return _rate_refusal(result.retry_after)
        return await self._hit_limits(policy.request_limits, identity, now)

    async def _hit_limits(self, limits: tuple[RateLimit, ...], identity: Identity, now: float,
                          cost: int = 1) -> Refusal | None:
        """One hit of `cost` on each limit's bucket for this identity; the first refusal, if any."""
        if not limits:
            return None
        refused = await self.store.hit_all(_limit_hits(limits, identity), now, cost)
        return None if refused is None else _rate_refusal(refused.retry_after)

    # ------------------------------------------------------------------ after a decision

    async def apply(self, decision: Decision, identity: Identity, alert: Mapping[str, Any], policy: Policy) -> list[dict]:
        """Execute a decision for one alert; returns one result per action (for the alert record)."""
        alert_id = str(alert.get("alert_id") or alert.get("id") or uuid.uuid4().hex)
        base = {"alert_id": alert_id, "identity": identity, "policy": policy.name}
        await self.audit.append("decision", {**base, "decision": decision.to_dict()})
        results: list[dict] = []
        if decision.mode == "monitor":
            for action in decision.would_actions:
                results.append(await self._would(action, base))
            for action in await self._escalations(decision, identity, policy, alert_id, monitor=True):
                results.append(await self._would(action, base))
            return results
        for action in decision.actions:
            if action.kind != "log":
                results.append(await self._execute(action, identity, alert, alert_id))
        for action in decision.pending:
            results.append(await self._request_approval(action, identity, alert_id, policy))
        for action in await self._escalations(decision, identity, policy, alert_id, monitor=False):
            if policy.needs_approval(action):
                results.append(await self._request_approval(action, identity, alert_id, policy))
            else:
                results.append(await self._execute(action, identity, alert, alert_id))
        return results

    async def _would(self, action: Action, base: dict) -> dict:
        result = {"action": action.kind, "subject": action.subject, "params": dict(action.params), "status": "would"}
        await self.audit.append("action", {**base, **_public(result), "phase": "would", "action": f"would_{action.kind}",
                                           "params": dict(action.params)})
        return result

    async def _escalations(self, decision: Decision, identity: Identity, policy: Policy, alert_id: str,
                           monitor: bool) -> list[Action]:
        """Record strikes; return the sanctions ladders now call for (levels remembered)."""
        now = self.clock()
        out: list[Action] = []
        seen: set[str] = set()
        for threat in decision.strikes:
            for ladder in ladders_for(policy, threat):
                subj = ladder_subject(ladder, identity)
                if subj is None or ladder.ladder_id in seen:
                    continue
                seen.add(ladder.ladder_id)
                ladder_key = f"monitor:{ladder.ladder_id}" if monitor else ladder.ladder_id
                if not await self.store.claim(f"strike:{alert_id}:{ladder_key}", CLAIM_TTL_S, now):
                    continue  # this alert already counted
                counted = strike_subject(ladder, identity, subj)
                address = address_strike_subject(ladder, identity)
                strikes = await self.store.add_strike(ladder_key, counted, now, ladder.within_s)
                from_address = 0 if address is None else await self.store.add_strike(
                    ladder_key, address, now, ladder.within_s)
                if address is not None and strikes < ladder.strikes <= from_address:
                    counted, subj, strikes = address, address, from_address  # spread over keys: the address answers
                level = await self.store.get_level(ladder_key, counted, now)
                action = escalation_step(ladder, strikes, level, subj)
                if action is None:
                    continue
                await self.store.clear_strikes(ladder_key, counted)
                if address is not None and address != counted:  # these offences are answered
                    await self.store.clear_strikes(ladder_key, address)
                await self.store.set_level(ladder_key, counted, action.params["level"], now + ladder.reset_after_s)
                out.append(action)
        return out

    async def _request_approval(self, action: Action, identity: Identity, alert_id: str, policy: Policy) -> dict:
        approval = Approval(
            id=uuid.uuid4().hex[:16], action=action, identity=identity, alert_id=alert_id,
            created_at=self.clock(), reason=f"policy {policy.name} requires approval for {action.kind}",
        )
        if not await self.store.claim(f"approval:{alert_id}:{action.kind}:{action.subject}", CLAIM_TTL_S, approval.created_at):
            return {"action": action.kind, "subject": action.subject, "status": "duplicate"}
        await self.store.add_approval(approval)
        result = {"action": action.kind, "subject": action.subject, "status": "pending", "approval_id": approval.id}
        await self.audit.append("approval_requested", {"alert_id": alert_id, "identity": identity, **_public(result),
                                                       "params": dict(action.params)})
        return result

    async def _execute(self, action: Action, identity: Identity, alert: Mapping[str, Any], alert_id: str,
                       claim_key: str | None = None) -> dict:
        now = self.clock()
        result: dict[str, Any] = {"action": action.kind, "subject": action.subject}
        key = claim_key or f"action:{alert_id}:{action.kind}:{action.subject}"
        if not await self.store.claim(key, CLAIM_TTL_S, now):
            return {**result, "status": "duplicate"}
        base = {"alert_id": alert_id, "identity": identity}
        await self.audit.append("action", {**base, "phase": "intent", **_public(result), "params": dict(action.params)})
        try:
            result.update(await self._run(action, identity, alert, alert_id, now))
            result.setdefault("status", "done")
        except Exception as exc:  # noqa: BLE001 - recorded, never raised into the request
            log.exception("action %s failed", action.kind)
            result.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        await self.audit.append("action", {**base, "phase": "result", **_public(result)})
        return result

    async def _run(self, action: Action, identity: Identity, alert: Mapping[str, Any], alert_id: str,
                   now: float) -> dict[str, Any]:
        p = action.params
        reason = str(alert.get("title") or alert.get("threat_type") or action.kind)
        rule = ", ".join(str(r) for r in (alert.get("rule_ids") or ())[:8]) or None
        if action.kind in _SANCTION_OF:
            kind, key = _SANCTION_OF[action.kind], action.subject
            if action.kind == "isolate_agent" and identity.agent is None and key == identity.api_key_hash:
                kind = "key"  # no agent named: its key is isolated (not an address's anchor)
            if action.kind == "block_ip_range":
                own = as_network(str(key))  # an address, or an IPv6 client's counted network
                if own is None:
                    return {"status": "skipped", "error": f"not an address: {key}"}
                prefix = int(p.get("prefix_v4", 24) if own.version == 4 else p.get("prefix_v6", 64))
                key = str(own.supernet(new_prefix=prefix) if prefix < own.prefixlen else own)
            if not key:
                return {"status": "skipped", "error": "no subject"}
            duration = p.get("duration_s")
            expires = None if duration is None else now + float(duration)
            level = int(p.get("level", 0))
            await self.store.add_sanction(Sanction(kind, str(key), reason, now, expires, level, alert_id, rule))
            anchor = identity.anchor_for(kind)
            if anchor is not None and anchor != key and str(key).endswith(anchor[1:]):
                # A scoped id: recorded on its key or address too, which naming another id keeps.
                await self.store.add_sanction(Sanction(kind, anchor, reason, now, expires, level, alert_id, rule))
                return {"sanction": kind, "key": key, "anchor": anchor, "expires_at": expires}
            return {"sanction": kind, "key": key, "expires_at": expires}
        if action.kind == "rate_limit":
            until = now + float(p.get("duration_s", 3600.0))
            limit, window_s = int(p["limit"]), float(p["window_s"])
            await self.store.set_override_limit(str(action.subject), limit, window_s, until)
            # Listed with the sanctions (GET /api/blocks), where it can be lifted too.
            await self.store.add_sanction(Sanction("rate_limit", str(action.subject),
                                                   f"{reason} (at most {limit} per {window_s:g}s)", now, until,
                                                   0, alert_id, rule))
            return {"limit": p["limit"], "window_s": p["window_s"], "until": until}
        if action.kind == "notify":
            if self.notifier is None:
                return {"status": "skipped", "error": "no notifier configured"}
            await self.notifier(action, dict(alert))
            return {"target": p.get("target")}
        if action.kind == "flag_session":
            if not action.subject:
                return {"status": "skipped", "error": "no subject"}
            note = str(p.get("note") or "")
            until = now + FLAG_TTL_S
            await self.store.add_sanction(Sanction("flag", str(action.subject), note or reason, now, until, 0,
                                                   alert_id, rule))
            return {"flagged": action.subject, "note": note, "expires_at": until}
        # block_request and redact are carried out by the proxy itself; recorded here.
        return {}

    # ------------------------------------------------------------------ approvals

    async def approve(self, approval_id: str, by: str) -> dict | None:
        """Approve a pending action and execute it now (durations count from approval)."""
        approval = await self.store.resolve_approval(approval_id, True, by, self.clock())
        if approval is None:
            return None
        await self.audit.append("approval_decided", {**_approval_record(approval)})
        result = await self._execute(approval.action, approval.identity, {"title": approval.reason},
                                     approval.alert_id or approval.id, claim_key=f"approved:{approval.id}")
        return {**result, "approval_id": approval.id, "approval_status": approval.status}

    async def deny(self, approval_id: str, by: str) -> dict | None:
        approval = await self.store.resolve_approval(approval_id, False, by, self.clock())
        if approval is None:
            return None
        await self.audit.append("approval_decided", {**_approval_record(approval)})
        return {"action": approval.action.kind, "subject": approval.action.subject, "status": "denied",
                "approval_id": approval.id, "approval_status": approval.status}

    async def execute(self, action: Action, identity: Identity, alert_id: str, reason: str,
                      claim_key: str | None = None, rule_ids: Sequence[str] = ()) -> dict:
        """Run one action outside the inline path (the SOC remediator), exactly once per claim key."""
        return await self._execute(action, identity, {"title": reason, "rule_ids": list(rule_ids)}, alert_id,
                                   claim_key=claim_key)

    async def request_approval(self, action: Action, identity: Identity, alert_id: str, policy: Policy) -> dict:
        """Queue one action for an admin's decision (the SOC remediator's held actions)."""
        return await self._request_approval(action, identity, alert_id, policy)

    async def release(self, kind: str, key: str, by: str) -> bool:
        """Lift a sanction (DELETE /api/blocks/{kind}/{key}); audited with who did it. Lifting a
        scoped user or session (``bob@203.0.113.9``) lifts its key's or address's record too;
        lifting a `rate_limit` lifts the limit itself."""
        removed = await self.store.remove_sanction(kind, key)
        if kind == "rate_limit":
            removed = await self.store.remove_override_limit(key) or removed
        anchor = anchor_of(kind, key)
        if removed and anchor is not None:
            await self.store.remove_sanction(kind, anchor)
        await self.audit.append("sanction_released", {"kind": kind, "key": key, "by": by, "removed": removed})
        return removed


def _log_store_failure(what: str, exc: Exception) -> None:
    if isinstance(exc, StoreUnavailable):  # the store reports its own outage once
        log.debug("%s: %s", what, exc)
    else:
        log.exception("%s failed", what)


def _rate_limit_failure(policy: Policy, what: str, exc: BaseException) -> Refusal | None:
    """A rate-limit store failure, by the policy's fail mode: open lets the request through."""
    _log_store_failure(what, exc)
    if policy.fail_modes.get("rate_limit", "open") == "closed":
        return Refusal(503, "enforcement_unavailable", "Rate limiting is unavailable; try again shortly.", 5.0)
    return None


def _rate_refusal(retry_after: float) -> Refusal:
    return Refusal(429, "rate_limit_exceeded", "Rate limit exceeded; retry later.", retry_after)


def _sanction_refusal(sanction: Sanction, now: float) -> Refusal:
    status, code, message = _REFUSALS[sanction.kind]
    retry = None if sanction.expires_at is None else max(sanction.expires_at - now, 0.0)
    return Refusal(status, code, message, retry)


def _limit_hits(limits: tuple[RateLimit, ...], identity: Identity) -> list[tuple[str, int, float]]:
    """(bucket, limit, window_s) of each limit for this identity, in the policy's order."""
    return [(_bucket(rl, subject_for(identity, rl.key)), rl.limit, rl.window_s) for rl in limits]


def _bucket(rl: RateLimit, subj: str) -> str:
    """The store key of one rate limit for one subject."""
    return f"{_bucket_prefix(rl.key, rl.limit, rl.window_s, rl.unit)}{subj}"


@lru_cache(maxsize=256)
def _bucket_prefix(key: str, limit: int, window_s: float, unit: str) -> str:
    return f"rl:{key}:{limit}{'' if unit == 'requests' else unit}/{window_s:g}:"


def _public(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "params"}


def _approval_record(a: Approval) -> dict:
    return {"approval_id": a.id, "alert_id": a.alert_id, "identity": a.identity, "action": a.action.to_dict(),
            "status": a.status, "decided_by": a.decided_by, "decided_at": a.decided_at}


__all__ = ["Enforcer", "Refusal"]

