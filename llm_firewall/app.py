"""create_app(settings): wires the stages together and owns their lifecycle.

Reading order for newcomers: config -> app (this file) -> gateway (the inline path) -> the stage
modules it calls (proxy/, detect/, score/, policy/, enforce/) -> soc/ for the out-of-band path.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from llm_firewall import __version__, decision_log
from llm_firewall.alerts import AlertHub
from llm_firewall.api import admin, chat, guard, scenarios, ws
from llm_firewall.appkeys import GATEWAY, SETTINGS, STATE
from llm_firewall.audit import AuditLog
from llm_firewall.config import Settings
from llm_firewall.enforce.actions import Enforcer
from llm_firewall.enforce.memory_store import MemoryStore
from llm_firewall.gateway import Gateway
from llm_firewall.inspector import Inspector
from llm_firewall.live_policy import LivePolicy
from llm_firewall.metrics import Metrics
from llm_firewall.middlewares import http_frame
from llm_firewall.notify import WebhookNotifier
from llm_firewall.policy.model import Policy, PolicyError
from llm_firewall.proxy.forward import Upstream
from llm_firewall.soc.wiring import build_pipeline
from llm_firewall.tools.demo_upstream import start_demo_upstream
from llm_firewall.usage import UsageTracker

log = logging.getLogger("llm_firewall")



def _check_overrides(inspector: Inspector) -> Any:
    known = {rule.id for rule in inspector.engine.ruleset.rules}
    known |= {getattr(d, "rule_id", "") for d in inspector.engine.detectors} - {""}  # e.g. ML-PI-001

    def validate(policy: Policy) -> None:
        unknown = sorted(set(policy.rule_overrides) - known)
        if unknown:
            raise PolicyError(f"{policy.source_path}: policy {policy.name!r}: field 'rule_overrides': "
                              f"unknown rule id(s) {', '.join(unknown)}")
    return validate


def create_app(settings: Settings) -> web.Application:
    """Build the application; heavy set-up (rules, policy) happens here so errors surface early."""
    app = web.Application(client_max_size=settings.limits.max_body_bytes,
                          middlewares=[http_frame])
    app[SETTINGS] = settings
    metrics = Metrics()
    def load_inspector(policy: Policy | None) -> Inspector:
        return Inspector.load(settings.rules_dir, overrides=policy.rule_overrides if policy else None,
                              verdict_cache_chars=settings.verdict_cache_chars,
                              local_rules_dirs=settings.local_rules_dirs)

    inspector = load_inspector(None)
    live = LivePolicy(settings.policy, settings.policies_dir, validate=_check_overrides(inspector))
    if live.current.rule_overrides:
        inspector = load_inspector(live.current)
    data_dir = settings.data_dir
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    store = _make_store(settings, metrics)
    audit = AuditLog(data_dir / "audit.db" if data_dir else None)
    audit.listeners.append(lambda kind, record: decision_log.emit(decision_log.from_audit(kind, record)))
    notifier = _make_notifier(settings, live, audit)
    enforcer = Enforcer(store, audit, clock=time.time, notifier=notifier.deliver if notifier else None)
    alerts = AlertHub()
    usage = UsageTracker(metrics=metrics)
    replica = settings.replica or socket.gethostname()
    upstream = _upstream(settings, settings.upstream_url or "")  # demo: set at startup
    gateway = Gateway(settings, inspector=inspector, policy=live, enforcer=enforcer, alerts=alerts,
                      metrics=metrics, usage=usage, upstream=upstream, replica=replica)
    app[GATEWAY] = gateway
    if hasattr(store, "on_overflow"):
        store.on_overflow = lambda what, count: gateway.alerts.add(_overflow_alert(what, count, gateway.replica))
    app[STATE] = {"started": time.time(), "store": store, "audit": audit, "tasks": [], "ready": False,
                  "notifier": notifier}
    metrics.rules_loaded.set(inspector.engine.rule_count)
    metrics.soc_enabled.set(1)
    metrics.policy_info.info({"name": live.current.name, "sha256": live.current.sha256[:12]})

    async def on_policy_change(policy: Policy | None, error: str | None) -> None:
        if policy is None:
            metrics.policy_reload_errors.inc()
            await audit.append("policy_reload_failed", {"error": error, "kept": live.current.name})
            return
        gateway.inspector = load_inspector(policy)
        pipeline = app[STATE].get("pipeline")
        if pipeline is not None:  # the SOC holds actions for approval by the policy in force
            pipeline.analyst.approval_required = frozenset(policy.approval_required)
        metrics.policy_info.info({"name": policy.name, "sha256": policy.sha256[:12]})
        await audit.append("policy_reloaded", {"name": policy.name, "sha256": policy.sha256})

    live.on_change.append(on_policy_change)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_route("*", "/v1/{tail:.*}", gateway.handle)
    admin.setup_routes(app)
    chat.setup_routes(app)
    guard.setup_routes(app)
    scenarios.setup_routes(app)
    ws.setup_routes(app)
    _add_page(app)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


class InlineNotifier:
    """Webhook delivery for the policy's `notify` action, off the request path.

    Retries with backoff can take seconds; the request that triggered the alert must not wait
    for them, so delivery runs as a background task and a final failure lands in the audit trail.
    """

    def __init__(self, webhooks: WebhookNotifier, defaults: tuple[str, ...]) -> None:
        self.webhooks = webhooks
        self.defaults = defaults
        self._tasks: set[asyncio.Task[Any]] = set()

    async def deliver(self, action: Any, alert: dict[str, Any]) -> None:
        targets = [action.params["target"]] if action.params.get("target") else list(self.defaults)
        payload = {k: alert.get(k) for k in ("alert_id", "threat_type", "severity", "title", "ip", "user",
                                              "session", "rule_ids", "fp_probability")}
        for target in targets:
            task = asyncio.ensure_future(self.webhooks.send(target, payload, fmt=action.params.get("fmt", "json")))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.webhooks.close()


def _make_notifier(settings: Settings, live: LivePolicy, audit: AuditLog) -> InlineNotifier | None:
    targets = dict(live.current.notify_targets)
    if not settings.webhook_urls and not targets:
        return None

    async def dead_letter(target: str, payload: dict[str, Any], error: str) -> None:
        await audit.append("notify_dead_letter", {"target": target, "payload": payload, "error": error})

    webhooks = WebhookNotifier(on_dead_letter=dead_letter, targets=targets)
    return InlineNotifier(webhooks, tuple(settings.webhook_urls) or tuple(targets))


def _overflow_alert(what: str, count: int, replica: str | None) -> dict[str, Any]:
    """An operator-visible alert: the store holds more than its bound (nothing was dropped)."""
    return {"alert_id": f"alrt_store_{uuid.uuid4().hex[:12]}", "time": time.time(), "direction": "system",
            "threat_type": "rate_limit_abuse", "threats": ["rate_limit_abuse"], "severity": "high",
            "title": "Enforcement state over its memory bound",
            "description": f"{count} {what} kept beyond the configured bound; active sanctions are never dropped.",
            "rule_ids": [], "fp_probability": None, "recommendation": "investigate", "findings": [],
            "remediation_taken": [], "ip": None, "user": None, "session": None, "replica": replica}


def _upstream(settings: Settings, base_url: str) -> Upstream:
    return Upstream(base_url, settings.timeouts, api_key=settings.upstream_api_key,
                    transport=settings.upstream_transport, max_answer_bytes=settings.limits.max_answer_bytes)


def _make_store(settings: Settings, metrics: Metrics) -> Any:
    if settings.redis_url:
        from llm_firewall.enforce.redis_store import RedisStore  # optional dependency

        return RedisStore(settings.redis_url, metrics=metrics, ipv6_prefix=settings.ipv6_prefix,
                          fallback=MemoryStore(settings.journal_dir or settings.data_dir,
                                               ipv6_prefix=settings.ipv6_prefix))
    return MemoryStore(settings.data_dir, ipv6_prefix=settings.ipv6_prefix)


def _add_page(app: web.Application) -> None:
    web_dir = Path(__file__).with_name("web")

    async def index(request: web.Request) -> web.StreamResponse:
        page = web_dir / "index.html"
        if not page.exists():
            return web.Response(text="llm-firewall is running. The demo page is not installed.")
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", index)
    if web_dir.is_dir():
        app.router.add_static("/static/", web_dir, show_index=False, follow_symlinks=False)


async def _on_startup(app: web.Application) -> None:
    settings, gateway, state = app[SETTINGS], app[GATEWAY], app[STATE]
    if settings.uses_demo_upstream:
        runner, base = await start_demo_upstream(max_body_bytes=settings.limits.max_body_bytes)
        state["demo_runner"] = runner
        gateway.upstream = _upstream(settings, base)
        log.info("no upstream configured: serving the embedded demo model at %s", base)
    await gateway.upstream.start()
    keep = gateway.alerts._recent.maxlen or 1000
    gateway.alerts.restore(r["record"] for r in await state["audit"].aquery(kind="alert", limit=keep))
    state["pipeline"] = pipeline = build_pipeline(app, settings, gateway)
    gateway.submit_event = pipeline.submit
    await pipeline.start()
    state["tasks"].append(asyncio.create_task(gateway.policy.watch(), name="policy-watch"))
    if hasattr(state["store"], "start"):
        if hasattr(state["store"], "on_state_change"):  # Redis down/up shows on the live feed
            state["store"].on_state_change = lambda info: gateway.alerts.broadcast(
                {"type": "store_status", "data": info})
        await state["store"].start(fail_modes=lambda: gateway.policy.current.fail_modes)
    if settings.redis_url:  # every replica sees every replica's alerts
        from llm_firewall.enforce.fanout import AlertFanout

        state["fanout"] = AlertFanout(settings.redis_url, gateway.alerts,
                                      replica=gateway.replica or socket.gethostname())
        await state["fanout"].start()
    try:
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, lambda: asyncio.ensure_future(gateway.policy.reload("SIGHUP")))
    except (NotImplementedError, RuntimeError):
        pass
    # Rules, models and tables live as long as the process: moved out of the collector's sight,
    # a full collection under load walks only what requests allocate (pauses of ~100 ms before).
    gc.collect()
    gc.freeze()
    state["ready"] = True
    await state["audit"].append("startup", {"version": __version__, "policy": gateway.policy.current.name,
                                            "upstream": "demo" if settings.uses_demo_upstream else "configured"})


async def _on_shutdown(app: web.Application) -> None:
    app[STATE]["ready"] = False


async def _on_cleanup(app: web.Application) -> None:
    state, gateway = app[STATE], app[GATEWAY]
    for task in state["tasks"]:
        task.cancel()
    await asyncio.gather(*state["tasks"], return_exceptions=True)
    if "pipeline" in state:
        await state["pipeline"].stop()
    await gateway.upstream.close()
    for lane in gateway.inspect_lanes:
        lane.pool.shutdown(wait=False, cancel_futures=True)
    if state.get("notifier") is not None:
        await state["notifier"].close()
    if "fanout" in state:
        await state["fanout"].stop()
    if "demo_runner" in state:
        await state["demo_runner"].cleanup()
    await state["store"].close()
    await state["audit"].close()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    state, gateway = request.app[STATE], request.app[GATEWAY]
    ready = state["ready"]
    body = {"ready": ready, "policy": gateway.policy.current.name, "policy_error": gateway.policy.error,
            "circuit": gateway.breaker.state}
    return web.json_response(body, status=200 if ready else 503)


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    """Refresh the gauges that are read from state, then serve with prometheus-client's handler."""
    gateway = request.app[GATEWAY]
    state = request.app[STATE]
    pipeline = state.get("pipeline")
    if pipeline is not None:
        for name, q in (pipeline.status().get("queues") or {}).items():
            gateway.metrics.queue_depth.labels(name).set(q.get("depth", 0))
            gateway.metrics.queue_drops.labels(name).mirror(q.get("drops", 0))
    sanctions = await state["store"].list_sanctions(time.time())
    gateway.metrics.sanctions.clear()
    for kind in {s.kind for s in sanctions}:
        gateway.metrics.sanctions.labels(kind).set(sum(1 for s in sanctions if s.kind == kind))
    if "metrics_handler" not in state:
        state["metrics_handler"] = make_aiohttp_handler(gateway.metrics.registry)
    return await state["metrics_handler"](request)
