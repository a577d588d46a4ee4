"""The out-of-band SOC pipeline: builder -> analyst -> remediator on bounded queues.

`submit` is the only thing the inline path calls: it never awaits and never raises, so a slow
or broken SOC can cost a request at most one queue insertion. Everything after that runs in
background tasks; each stage survives errors in single events, and `stop` is bounded in time.

Events accepted by `submit` (dicts):
- alert: ``{"type": "alert", "alert_id", "threat", "severity", "title", "rule_ids",
  "fp_probability", "recommendation", "excerpt", "identity": {ip, user, session, key, agent},
  "soc_actions": [policy actions to run once the SOC confirms it], "actions_taken": [...]}``
- traffic signal: ``{"type": "request", "identity": {...}, "status": 429, "outcome": "rate_limited"}``
- playbook: ``{"type": "playbook", "playbook": Playbook | Playbook.to_dict()}``

`on_alert` receives what the SOC itself raises: ``{"type": "soc_alert", ...alert}`` (log
monitoring, rate-limit abuse, queue saturation, circuit changes) and ``{"type": "soc_verdict",
"alert_id", "recommendation", "previous", "reason", "second_opinion"}`` when the analyst changed
an alert's recommendation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from llm_firewall.domain import Finding
from llm_firewall.notify import WebhookNotifier
from llm_firewall.reliability.idempotency import ExecutionTracker
from llm_firewall.soc.analyst import Analyst, Decision
from llm_firewall.soc.builder import Builder
from llm_firewall.soc.bus import BoundedQueue
from llm_firewall.soc.llm_analyst import LlmAnalyst
from llm_firewall.soc.logtail import FileTailer, LogSource, log_alert, parse_line, scan_record
from llm_firewall.soc.playbook import Playbook, PlaybookError
from llm_firewall.soc.remediator import AuditAppend, Remediate, Remediator

log = logging.getLogger(__name__)


class SocPipeline:
    def __init__(
        self,
        *,
        remediate: Remediate,
        audit_append: AuditAppend,
        on_alert: Callable[[dict], None] | None = None,
        llm: LlmAnalyst | None = None,
        log_sources: Sequence[LogSource] = (),
        scan_line: Callable[[str], list[Finding]] | None = None,
        queue_size: int = 1000,
        clock: Callable[[], float] = time.time,
        queue_strategy: str = "drop_oldest",
        notifier: WebhookNotifier | None = None,
        notify_targets: Sequence[str] = (),
        notify_fmt: str = "json",
        notify_min_severity: str = "high",
        approval_required: Sequence[str] = (),
        tracker: ExecutionTracker | None = None,
        incident_window_s: float = 600.0,
        corroborate_after: int = 3,
        confirm_actions: list[Any] | None = None,
        builder: Builder | None = None,
        llm_max_inflight: int = 8,
        saturation_after_s: float = 5.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        if log_sources and scan_line is None:
            raise ValueError("log_sources need a scan_line function to run the request rules on")
        self._clock = clock
        self._on_alert = on_alert
        self.llm = llm
        self.log_sources = tuple(log_sources)
        self._scan_line = scan_line
        self.stop_timeout_s = stop_timeout_s
        self.llm_max_inflight = llm_max_inflight
        qkw: dict[str, Any] = {"saturation_after_s": saturation_after_s, "on_saturation": self._saturated}
        self.intake = BoundedQueue("intake", queue_size, strategy=queue_strategy, **qkw)
        self.analysis = BoundedQueue("analysis", queue_size, strategy=queue_strategy, **qkw)
        # losing a decided playbook is worse than waiting a little for the remediator
        self.remediation = BoundedQueue("remediation", max(queue_size // 4, 16), strategy="block",
                                        block_timeout_s=1.0, **qkw)
        self.builder = builder or Builder(clock=clock)
        self.analyst = Analyst(
            clock=clock, window_s=incident_window_s, corroborate_after=corroborate_after,
            confirm_actions=confirm_actions, notify_targets=tuple(notify_targets), notify_fmt=notify_fmt,
            notify_min_severity=notify_min_severity, approval_required=frozenset(approval_required),
        )
        self._own_notifier = notifier is None and bool(notify_targets)
        if notifier is None and notify_targets:
            notifier = WebhookNotifier(on_dead_letter=self._dead_letter, on_circuit_change=self._circuit_changed)
        self.notifier = notifier
        if llm is not None and llm.breaker.on_change is None:
            llm.breaker.on_change = self._circuit_changed
        self.remediator = Remediator(remediate=remediate, audit_append=audit_append,
                                     tracker=tracker or ExecutionTracker(), notifier=notifier)
        self._tasks: list[asyncio.Task] = []
        self._llm_tasks: set[asyncio.Task] = set()
        self._busy = {"builder": False, "analyst": False, "remediator": False}
        self._tail_stats: dict[str, dict[str, Any]] = {}
        self.running = False
        self.started_at: float | None = None
        self.counts = {"submitted": 0, "dropped": 0, "submit_errors": 0, "stage_errors": 0,
                       "soc_alerts": 0, "llm_skipped_busy": 0, "verdicts_changed": 0}

    # -- the inline path's entry ------------------------------------------------------------
    def submit(self, event: dict) -> bool:
        """Hand an event to the SOC. Never awaits, never raises; False means it was dropped."""
        try:
            self.counts["submitted"] += 1
            ok = self.intake.put_nowait(event)
            if not ok:
                self.counts["dropped"] += 1
            return ok
        except Exception:  # noqa: BLE001  # pragma: no cover - defensive: the inline path must never see it
            self.counts["submit_errors"] += 1
            return False

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self.running:
            return
        self.running = True
        self.started_at = self._clock()
        spawn = asyncio.get_running_loop().create_task
        self._tasks = [
            spawn(self._stage("builder", self.intake, self._build), name="soc-builder"),
            spawn(self._stage("analyst", self.analysis, self._analyse), name="soc-analyst"),
            spawn(self._stage("remediator", self.remediation, self._remediate_one), name="soc-remediator"),
            spawn(self._housekeeping(), name="soc-housekeeping"),
        ]
        for source in self.log_sources:
            tailer = FileTailer(source.path, from_start=source.from_start)  # start offset: now
            self._tasks.append(spawn(self._tail(source, tailer), name=f"soc-tail-{source.label}"))

    async def stop(self) -> None:
        """Let queued work finish for up to `stop_timeout_s`, then cancel what is left."""
        if not self.running:
            return
        self.running = False
        deadline = time.monotonic() + self.stop_timeout_s
        tailers = [t for t in self._tasks if t.get_name().startswith("soc-tail-")]
        for t in tailers:
            t.cancel()
        while time.monotonic() < deadline and not self._idle():  # noqa: ASYNC110  (idle spans three queues and the agents)
            await asyncio.sleep(0.01)
        for t in [*self._tasks, *self._llm_tasks]:
            t.cancel()
        await asyncio.gather(*self._tasks, *self._llm_tasks, return_exceptions=True)
        await self.remediator.cancel_pending()
        self._tasks.clear()
        self._llm_tasks.clear()
        if self._own_notifier and self.notifier is not None:
            await self.notifier.close()

    def _idle(self) -> bool:
        queues_empty = self.intake.empty() and self.analysis.empty() and self.remediation.empty()
        return (queues_empty and not any(self._busy.values()) and not self._llm_tasks
                and not self.remediator.pending)

    # -- stages -----------------------------------------------------------------------------
    async def _stage(self, name: str, queue: BoundedQueue, handle: Callable[[Any], Awaitable[None]]) -> None:
        while True:
            item = await queue.get()
            self._busy[name] = True
            try:
                await handle(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counts["stage_errors"] += 1
                log.exception("SOC %s failed on one event; carrying on", name)
            finally:
                self._busy[name] = False

    async def _build(self, event: Any) -> None:
        if isinstance(event, dict) and event.get("type") == "playbook":
            pb = event.get("playbook")
            try:
                pb = pb if isinstance(pb, Playbook) else Playbook.from_dict(pb)
            except PlaybookError as exc:
                await self.remediator.audit("soc.playbook.rejected", {"error": str(exc)})
                return
            await self.remediation.put(pb)
            return
        for alert in self.builder.handle(event):
            if alert["source"] != "inline":
                self._raise(alert)
            self.analysis.put_nowait(alert)

    async def _analyse(self, alert: dict[str, Any]) -> None:
        incident = self.analyst.incident_for(alert)
        if self.llm is not None and self.analyst.needs_opinion(alert, incident):
            if len(self._llm_tasks) < self.llm_max_inflight:
                task = asyncio.get_running_loop().create_task(self._with_opinion(alert, incident))
                self._llm_tasks.add(task)
                task.add_done_callback(self._llm_tasks.discard)
                return
            self.counts["llm_skipped_busy"] += 1
        await self._conclude(self.analyst.decide(alert, incident))

    async def _with_opinion(self, alert: dict[str, Any], incident: Any) -> None:
        try:
            assert self.llm is not None  # called only when there is one
            opinion = await self.llm.review(alert)
        except asyncio.CancelledError:
            raise
        except Exception:  # the analyst's own judgement stands when the model misbehaves
            log.exception("LLM analyst failed unexpectedly")
            opinion = None
        try:
            await self._conclude(self.analyst.decide(alert, incident, opinion))
        except asyncio.CancelledError:
            raise
        except Exception:
            self.counts["stage_errors"] += 1
            log.exception("SOC analyst failed on one alert; carrying on")

    async def _conclude(self, decision: Decision) -> None:
        if decision.changed:
            self.counts["verdicts_changed"] += 1
            self._emit({
                "type": "soc_verdict",
                "alert_id": decision.alert.get("alert_id"),
                "incident_id": decision.incident.incident_id,
                "previous": decision.alert.get("recommendation"),
                "recommendation": decision.recommendation,
                "reason": decision.reason,
                "second_opinion": decision.second_opinion.to_dict() if decision.second_opinion else None,
            })
        if decision.playbook is not None:
            if not await self.remediation.put(decision.playbook):
                log.error("remediation queue full: playbook %s dropped", decision.playbook.playbook_id)

    async def _remediate_one(self, pb: Playbook) -> None:
        await self.remediator.execute(pb)

    # -- log monitoring ---------------------------------------------------------------------
    async def _tail(self, source: LogSource, tailer: FileTailer) -> None:
        stats = self._tail_stats.setdefault(source.path, {"lines": 0, "unparsed": 0, "alerts": 0, "errors": 0})
        try:
            while True:
                try:
                    lines = await asyncio.to_thread(tailer.read_new)
                except OSError as exc:
                    stats["errors"] += 1
                    stats["last_error"] = f"{type(exc).__name__}: {exc}"
                    lines = []
                stats.update(rotations=tailer.rotations, truncations=tailer.truncations)
                for i, line in enumerate(lines):
                    stats["lines"] += 1
                    self._scan_log_line(source, line, stats)
                    if i % 200 == 199:
                        await asyncio.sleep(0)  # let requests run between batches
                await asyncio.sleep(source.poll_interval_s)
        finally:
            tailer.close()

    def _scan_log_line(self, source: LogSource, line: str, stats: dict[str, Any]) -> None:
        record = parse_line(line, source.format)
        if record is None:
            stats["unparsed"] += 1
            return
        assert self._scan_line is not None  # log sources come with one (checked in __init__)
        try:
            findings = scan_record(record, self._scan_line)
        except Exception:
            stats["errors"] += 1
            log.exception("scan of a log line from %s failed", source.label)
            return
        if findings:
            stats["alerts"] += 1
            self.submit(log_alert(source, record, findings, self._clock()))

    # -- signals the SOC raises itself ------------------------------------------------------
    def _emit(self, payload: dict[str, Any]) -> None:
        if self._on_alert is None:
            return
        try:
            self._on_alert(payload)
        except Exception:
            log.exception("on_alert hook failed")

    def _raise(self, alert: dict[str, Any]) -> None:
        self.counts["soc_alerts"] += 1
        self._emit({**alert, "type": "soc_alert"})

    def _saturated(self, name: str, stats: dict[str, Any]) -> None:
        self._raise({"source": "soc", "threat": "soc_health", "severity": "medium", "category": "queue_saturated",
                     "title": f"SOC queue {name} above 80 % ({stats['depth']}/{stats['maxsize']}, "
                              f"{stats['drops']} dropped)", "queue": stats, "ts": self._clock()})

    def _circuit_changed(self, name: str, old: str, new: str) -> None:
        self._raise({"source": "soc", "threat": "soc_health", "severity": "medium" if new == "open" else "low",
                     "category": "circuit", "title": f"circuit {name}: {old} -> {new}", "ts": self._clock()})

    async def _dead_letter(self, target: str, payload: dict, error: str) -> None:
        await self.remediator.audit("soc.notify.dead_letter", {"target": target, "payload": payload, "error": error})

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for q in (self.intake, self.analysis, self.remediation):
                q.check()

    # -- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        circuits = {}
        if self.llm is not None:
            circuits[self.llm.breaker.name] = self.llm.breaker.state
        if self.notifier is not None:
            circuits.update({cb.name: cb.state for cb in self.notifier.breakers.values()})
        return {
            "running": self.running,
            "started_at": self.started_at,
            **self.counts,
            "queues": {q.name: q.stats() for q in (self.intake, self.analysis, self.remediation)},
            "circuits": circuits,
            "builder": dict(self.builder.counts),
            "incidents": self.analyst.status(),
            "remediator": self.remediator.status(),
            "notifier": self.notifier.status() if self.notifier is not None else None,
            "llm": self.llm.stats() if self.llm is not None else None,
            "llm_inflight": len(self._llm_tasks),
            "notifications_inflight": self.remediator.pending,
            "log_sources": {s.path: {"format": s.format, **self._tail_stats.get(s.path, {})}
                            for s in self.log_sources},
        }
