"""Remediator agent: runs validated playbooks once, records intent and result.

Only whitelisted, schema-checked actions run (see playbook.py). Every action carries an
idempotency key claimed through the ExecutionTracker, so a playbook submitted twice, or raced
by two workers or replicas, executes once. Enforcement actions go through the injected
`remediate` callable (the server's enforcement layer, which also holds actions that need
approval); notifications go through the WebhookNotifier. The audit trail gets the intent
before and the result after each action.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from llm_firewall.notify import WebhookNotifier
from llm_firewall.redact import redact_secrets, redact_value
from llm_firewall.reliability.idempotency import ExecutionTracker
from llm_firewall.soc.playbook import Playbook, PlaybookError, validate_playbook

log = logging.getLogger(__name__)

Remediate = Callable[[Playbook], Awaitable[list[dict]]]
AuditAppend = Callable[[str, dict], Awaitable[int]]


class Remediator:
    def __init__(
        self,
        *,
        remediate: Remediate,
        audit_append: AuditAppend,
        tracker: ExecutionTracker | None = None,
        notifier: WebhookNotifier | None = None,
    ) -> None:
        self._remediate = remediate
        self._audit = audit_append
        self.tracker = tracker or ExecutionTracker()
        self.notifier = notifier
        self._pending: set[asyncio.Task] = set()
        self.counts = {"playbooks": 0, "rejected": 0, "executed": 0, "duplicates": 0, "failed": 0,
                       "pending_approval": 0, "audit_errors": 0}

    async def audit(self, kind: str, record: dict[str, Any]) -> None:
        try:
            await self._audit(kind, redact_value(record))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the audit sink failing must not stop a ban
            self.counts["audit_errors"] += 1
            log.error("audit append %s failed: %s", kind, redact_secrets(str(exc)))

    async def execute(self, pb: Playbook) -> list[dict[str, Any]]:
        """Run `pb`'s actions in order; returns one result per action (duplicates included)."""
        self.counts["playbooks"] += 1
        try:
            validate_playbook(pb)
        except PlaybookError as exc:
            self.counts["rejected"] += 1
            log.warning("playbook rejected: %s", exc)
            await self.audit("soc.playbook.rejected", {"playbook_id": pb.playbook_id, "error": str(exc)})
            return [{"playbook_id": pb.playbook_id, "status": "rejected", "error": str(exc)}]
        results = []
        for action in pb.actions:
            base = {"playbook_id": pb.playbook_id, "incident_id": pb.incident_id, "alert_id": pb.alert_id,
                    **action.to_dict()}
            if not await self.tracker.claim(action.key):
                self.counts["duplicates"] += 1
                results.append({**base, "status": "duplicate"})
                continue
            await self.audit("soc.action.intent", {**base, "reason": pb.reason, "threat": pb.threat,
                                                   "severity": pb.severity, "source": pb.source})
            if action.kind == "notify":
                # a webhook may retry for seconds: it must not hold up the next ban
                task = asyncio.get_running_loop().create_task(self._finish(pb, action, base))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                results.append({**base, "status": "sending"})
                continue
            results.append(await self._finish(pb, action, base))
        return results

    async def _finish(self, pb: Playbook, action: Any, base: dict[str, Any]) -> dict[str, Any]:
        try:
            outcome = await self._run(pb, action)
        except asyncio.CancelledError:
            await self.tracker.release(action.key)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of one action is its outcome, audited
            outcome = {"status": "failed", "error": redact_secrets(f"{type(exc).__name__}: {exc}")[:300]}
        status = outcome.get("status", "done")
        if status == "failed":
            self.counts["failed"] += 1
            await self.tracker.release(action.key)  # a later submission may try again
        elif status == "pending_approval":
            self.counts["pending_approval"] += 1
        else:
            self.counts["executed"] += 1
        result = {**base, **outcome, "status": status}
        await self.audit("soc.action.result", result)
        return result

    @property
    def pending(self) -> int:
        """Notifications still being delivered."""
        return len(self._pending)

    async def cancel_pending(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)

    async def _run(self, pb: Playbook, action: Any) -> dict[str, Any]:
        if action.kind == "log":
            return {"status": "logged"}
        if action.kind == "notify":
            if self.notifier is None:
                return {"status": "failed", "error": "no webhook notifier configured"}
            payload = {"incident_id": pb.incident_id, "alert_id": pb.alert_id, "threat": pb.threat,
                       "severity": pb.severity, "title": pb.reason, "identity": pb.identity, "source": pb.source}
            ok = await self.notifier.send(action.params["target"], payload, fmt=action.params.get("fmt", "json"))
            if ok:
                return {"status": "done"}
            return {"status": "failed", "error": "delivery failed (dead-lettered)"}
        single = dataclasses.replace(pb, actions=[action])
        out = await self._remediate(single)
        first = out[0] if out else {}
        return dict(first) if isinstance(first, dict) else {"status": "done"}

    def status(self) -> dict[str, Any]:
        return {**self.counts, "tracker": self.tracker.stats()}
