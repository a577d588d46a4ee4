"""`POST /api/guard`: the firewall as a guardrail for another gateway (LiteLLM, Portkey, Kong).

Takes an OpenAI-shaped request or answer and answers the firewall's verdict without forwarding
anything (llm_firewall/guard.py). Opened by LLM_FIREWALL_GUARD_TOKEN or the admin token; with
neither set, like the admin API, only from loopback. Errors are OpenAI-shaped.
"""

from __future__ import annotations

from aiohttp import web

from llm_firewall import guard
from llm_firewall.api.auth import admin_refusal
from llm_firewall.appkeys import GATEWAY, SETTINGS
from llm_firewall.enforce.identity import vouched
from llm_firewall.gateway import json_error
from llm_firewall.proxy import hardening
from llm_firewall.proxy.openai_wire import WireError, parse_json_body

GUARD_HINT = ("Token required: send Authorization: Bearer <LLM_FIREWALL_GUARD_TOKEN> "
              "(or the admin token).")


async def guard_call(request: web.Request) -> web.Response:
    rid: str = request.get("request_id", "-")
    settings = request.app[SETTINGS]
    refusal = admin_refusal(request, settings.guard_token, settings.host, also=settings.admin_token,
                            hint=GUARD_HINT)
    if refusal is not None:
        return refusal
    gateway = request.app[GATEWAY]
    outcome = "error"
    try:
        raw = await gateway.read_body(request)
        if request.content_type != "application/json":
            raise WireError(f"Content-Type must be application/json, got {request.content_type or 'none'}",
                            status=415, code="unsupported_media_type")
        # One level more than the proxy allows: the OpenAI body sits inside the envelope.
        call = guard.parse_call(parse_json_body(raw, max_depth=settings.limits.max_json_depth + 1))
        who = call.identity
        try:
            identity = vouched(who.get("ip") or gateway.identify(request).ip, user=who.get("user"),
                               session=who.get("session"), agent=who.get("agent"))
        except ValueError:
            raise WireError("'identity.ip' must be an IP address", param="identity.ip") from None
        mode = hardening.requested_mode(gateway.policy.current, request.headers.get("X-Security-Mode"))
        verdict = await guard.judge(gateway, call, identity, rid, size=len(raw), security_mode=mode)
        outcome = verdict["decision"]
    except WireError as exc:
        return json_error(exc.status, exc.message, code=exc.code, param=exc.param, err_type=exc.err_type,
                          request_id=rid)
    finally:
        gateway.metrics.child(gateway.metrics.requests, "guard", outcome).inc()
    return web.json_response(verdict, headers={"x-request-id": rid})


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/guard", guard_call)
