"""The admin API: status, SOC toggle, alerts, blocks, approvals, audit, usage, policy reload.

Every route requires admin authentication (api/auth.py) and answers JSON; no CORS headers are
ever sent, so browsers on other origins cannot read it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, is_dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

from llm_firewall.api.auth import admin_refusal
from llm_firewall.appkeys import GATEWAY, SETTINGS, STATE
from llm_firewall.enforce.identity import client_address, describe
from llm_firewall.enforce.state import SANCTION_KINDS, Sanction
from llm_firewall.proxy.openai_wire import error_body
from llm_firewall.redact import redact_secrets

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def admin_only(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        settings = request.app[SETTINGS]
        refusal = admin_refusal(request, settings.admin_token, settings.host)
        if refusal is not None:
            return refusal
        return await handler(request)

    guarded.__name__ = handler.__name__
    return guarded


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    return redact_secrets(obj) if isinstance(obj, str) else obj


def _bad(request: web.Request, status: int, message: str, code: str) -> web.Response:
    return web.Response(status=status, body=error_body(message, code=code), content_type="application/json",
                        headers={"x-request-id": request.get("request_id", "-")})


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def status_summary(request: web.Request) -> dict[str, Any]:
    """Everything an operator checks first; also the page's metrics panel."""
    gw, state = request.app[GATEWAY], request.app[STATE]
    policy = gw.policy.current
    now = time.time()
    sanctions = await state["store"].list_sanctions(now)
    pipeline = state.get("pipeline")
    return {
        "soc_enabled": gw.soc_enabled,
        "uptime_s": round(now - state["started"], 1),
        "replica": gw.replica,
        "policy": {"name": policy.name, "mode": policy.mode, "security_mode": policy.security_mode,
                   "sha256": policy.sha256, "reload_error": gw.policy.error,
                   "loaded_at": gw.policy.loaded_at},
        "rules_loaded": gw.inspector.engine.rule_count,
        "counts": {**gw.counts, **gw.alerts.counts},
        "metrics": {"total_alerts": gw.alerts.counts["alerts"],
                    "false_positives": gw.alerts.counts["false_positives"],
                    "actions_taken": gw.alerts.counts["actions"],
                    "blocked_entities": sum(1 for s in sanctions if s.kind in SANCTION_KINDS)},
        "sanctions": [_listed(s) for s in sanctions],
        "rate_limits": [_plain(r) for r in policy.rate_limits],
        "queues": pipeline.status() if pipeline is not None else {},
        "circuits": {"upstream": {"state": gw.breaker.state, "retry_after": round(gw.breaker.retry_after(), 2)},
                     **{name: {"state": st} for name, st in
                        ((pipeline.status().get("circuits") or {}) if pipeline is not None else {}).items()}},
        "store": await state["store"].stats(),
        "pending_approvals": len(await state["store"].list_approvals("pending")),
    }


@admin_only
async def get_status(request: web.Request) -> web.Response:
    return web.json_response(await status_summary(request))


@admin_only
async def toggle(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if body is None or not isinstance(body.get("enabled"), bool):
        return _bad(request, 400, "send {\"enabled\": true|false}", "invalid_request_error")
    gw = request.app[GATEWAY]
    gw.soc_enabled = body["enabled"]
    gw.metrics.soc_enabled.set(1 if gw.soc_enabled else 0)
    await request.app[STATE]["audit"].append("soc_toggle", {"enabled": gw.soc_enabled, "by": "admin"})
    gw.alerts.broadcast({"type": "soc_toggle", "data": {"enabled": gw.soc_enabled}})
    return web.json_response({"soc_enabled": gw.soc_enabled})


@admin_only
async def alerts(request: web.Request) -> web.Response:
    q = request.query
    try:
        limit = max(1, min(1000, int(q.get("limit", "100"))))
    except ValueError:
        return _bad(request, 400, "limit must be an integer", "invalid_request_error")
    ip = q.get("ip")  # as alerts hold it: one spelling, an IPv6 client's network
    ip = ip and (client_address(ip, request.app[SETTINGS].ipv6_prefix) or ip)
    items = request.app[GATEWAY].alerts.recent(limit, severity=q.get("severity"), threat_type=q.get("threat"),
                                               ip=ip, user=q.get("user"), session=q.get("session"))
    return web.json_response({"alerts": items})


@admin_only
async def blocks(request: web.Request) -> web.Response:
    sanctions = await request.app[STATE]["store"].list_sanctions(time.time())
    return web.json_response({"blocks": [_listed(s) for s in sanctions]})


def _listed(sanction: Sanction) -> dict[str, Any]:
    """A sanction (of any kind: refusals, rate limits, flags) as the API lists it, with its
    subject for people ('user bob@203.0.113.9') and its times in ISO 8601 (UTC)."""
    return {**_plain(sanction), "subject": describe(sanction.kind, sanction.key),
            "created": _iso(sanction.created_at),
            "expires": None if sanction.expires_at is None else _iso(sanction.expires_at)}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@admin_only
async def unblock(request: web.Request) -> web.Response:
    kind, key = request.match_info["kind"], request.match_info["key"]
    removed = await request.app[GATEWAY].enforcer.release(kind, key, "admin")
    if not removed:
        return _bad(request, 404, f"no active {kind} sanction for {key!r}", "not_found")
    return web.json_response({"removed": True, "kind": kind, "key": key})


@admin_only
async def approvals(request: web.Request) -> web.Response:
    items = await request.app[STATE]["store"].list_approvals(request.query.get("status"))
    return web.json_response({"approvals": [_plain(a) for a in items]})


def _decide(approve: bool) -> Handler:
    @admin_only
    async def handler(request: web.Request) -> web.Response:
        enforcer = request.app[GATEWAY].enforcer
        approval_id = request.match_info["approval_id"]
        by = (await _json_body(request) or {}).get("by") or "admin"
        result = await (enforcer.approve(approval_id, str(by)[:64]) if approve else enforcer.deny(approval_id, str(by)[:64]))
        if result is None:
            return _bad(request, 404, f"no pending approval {approval_id!r}", "not_found")
        request.app[GATEWAY].alerts.broadcast({"type": "approval", "data": _plain(result)})
        return web.json_response({"approval": _plain(result)})
    return handler


@admin_only
async def audit(request: web.Request) -> web.Response:
    q = request.query
    try:
        since = int(q["since"]) if "since" in q else None
        limit = max(1, min(1000, int(q.get("limit", "100"))))
    except ValueError:
        return _bad(request, 400, "since and limit must be integers", "invalid_request_error")
    records = await request.app[STATE]["audit"].aquery(kind=q.get("kind"), since_seq=since, limit=limit,
                                                        identity=q.get("identity"), alert_id=q.get("alert_id"))
    return web.json_response({"records": records})


@admin_only
async def usage(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY].usage.summary())


@admin_only
async def reload_policy(request: web.Request) -> web.Response:
    ok, error = await request.app[GATEWAY].policy.reload("admin")
    policy = request.app[GATEWAY].policy.current
    return web.json_response({"reloaded": ok, "error": error, "policy": policy.name, "sha256": policy.sha256},
                             status=200 if ok else 422)


@admin_only
async def whoami(request: web.Request) -> web.Response:
    """The identity the firewall derives for this very request: which address it believes (is
    the caller's proxy trusted?), and the user, session and key fingerprint it would act on."""
    gateway = request.app[GATEWAY]
    identity = gateway.identify(request)
    peer = gateway.trust.resolve_peer(request.remote or "")
    return web.json_response({"ip": identity.ip, "user": identity.user, "session": identity.session,
                              "agent": identity.agent, "api_key_fingerprint": identity.api_key_hash,
                              "peer": request.remote, "peer_is_trusted_proxy": bool(peer and peer[1]),
                              "forwarded_header": gateway.trust.header})


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/whoami", whoami)
    r.add_get("/api/soc/status", get_status)
    r.add_post("/api/soc/toggle", toggle)
    r.add_get("/api/security/alerts", alerts)
    r.add_get("/api/blocks", blocks)
    # A range's or an IPv6 client's key holds a '/' (2001:db8::/64), sent as written: an encoded
    # '/' is refused for every path.
    r.add_delete("/api/blocks/{kind}/{key:.+}", unblock)
    r.add_get("/api/approvals", approvals)
    r.add_post("/api/approvals/{approval_id}/approve", _decide(True))
    r.add_post("/api/approvals/{approval_id}/deny", _decide(False))
    r.add_get("/api/audit", audit)
    r.add_get("/api/usage", usage)
    r.add_post("/api/policy/reload", reload_policy)
