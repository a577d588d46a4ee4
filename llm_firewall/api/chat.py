"""`POST /api/chat`: one message through the firewall, answered with its security analysis.

For the demo page and for scripts. It inspects in-process with the caller's own identity (so a
sanctioned client cannot use it to get around a block) and never streams. Like the admin API it
refuses other sites' pages and, without an admin token, any Host but a loopback one.
"""

from __future__ import annotations

from aiohttp import web

from llm_firewall.api.auth import browser_refusal
from llm_firewall.appkeys import GATEWAY, SETTINGS
from llm_firewall.proxy.hardening import MODES
from llm_firewall.proxy.openai_wire import error_body

MAX_MESSAGE_CHARS = 32_000


async def chat(request: web.Request) -> web.Response:
    rid = request.get("request_id", "-")
    refusal = browser_refusal(request, request.app[SETTINGS].admin_token)
    if refusal is not None:  # another site's page, or one reaching 127.0.0.1 by DNS rebinding
        return refusal
    try:
        body = await request.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    mode = body.get("security_mode") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip() or len(message) > MAX_MESSAGE_CHARS:
        return web.Response(status=400, content_type="application/json", headers={"x-request-id": rid},
                            body=error_body(f"send {{\"message\": \"...\"}} (at most {MAX_MESSAGE_CHARS} characters)",
                                            code="invalid_request_error", param="message"))
    if mode is not None and mode not in MODES:
        return web.Response(status=400, content_type="application/json", headers={"x-request-id": rid},
                            body=error_body(f"security_mode must be one of {', '.join(MODES)}",
                                            code="invalid_request_error", param="security_mode"))
    gateway = request.app[GATEWAY]
    identity = gateway.identify(request)
    result = await gateway.chat_once([{"role": "user", "content": message}], identity,
                                     security_mode=mode, rid=rid)
    alert = result.get("alert")
    return web.json_response({
        "answer": result.get("answer"),
        "blocked": result.get("blocked", False),
        "refused": result.get("refused", False),
        "status": result.get("status", 200),
        "code": result.get("code"),
        "retry_after": result.get("retry_after"),
        "finish_reason": result.get("finish_reason"),
        "security": {"threats_detected": alert is not None, "alert": alert},
        "remediation": (alert or {}).get("remediation_taken", []),
    }, headers={"x-request-id": rid})


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/chat", chat)
