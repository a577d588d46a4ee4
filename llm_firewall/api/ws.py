"""`/ws`: the live alert feed (`security_alert`, `metrics`, `soc_toggle`, `approval` events).

Same authentication as the admin API (the token may come as `?token=` because browsers cannot set
headers on a WebSocket), and the Origin must be this host or one listed in
LLM_FIREWALL_WS_ORIGINS, which stops other sites from reading alerts through a browser.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from llm_firewall.api.auth import admin_refusal
from llm_firewall.appkeys import GATEWAY, SETTINGS

METRICS_EVERY_S = 2.0


async def feed(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    origin = request.headers.get("Origin")
    checked = request
    if origin is not None and origin in settings.ws_allowed_origins:
        checked = request.clone(headers={k: v for k, v in request.headers.items() if k != "Origin"})
    refusal = admin_refusal(checked, settings.admin_token, settings.host, presented=request.query.get("token"))
    if refusal is not None:
        return refusal
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    gateway = request.app[GATEWAY]
    queue = gateway.alerts.subscribe()

    async def pump() -> None:
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), timeout=METRICS_EVERY_S)
            except TimeoutError:
                message = {"type": "metrics", "data": {**gateway.alerts.counts, **gateway.counts,
                                                        "soc_enabled": gateway.soc_enabled}}
            await ws.send_json(message)

    sender = asyncio.create_task(pump())
    try:
        await ws.send_json({"type": "hello", "data": {"soc_enabled": gateway.soc_enabled,
                                                      "policy": gateway.policy.current.name}})
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await sender
        gateway.alerts.unsubscribe(queue)
    return ws


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/ws", feed)
