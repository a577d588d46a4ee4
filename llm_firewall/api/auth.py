"""Admin authentication shared by the admin API, the live feed and the demo endpoints.

A bearer token compared in constant time. With no token configured, only a loopback listener
reached directly from loopback is trusted (the out-of-the-box demo); any cross-origin browser
request is refused so a web page cannot drive the admin API through the operator's browser.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from llm_firewall.proxy.openai_wire import error_body

MAX_TOKEN_LEN = 512


def _is_loopback(addr: str | None) -> bool:
    try:
        return addr is not None and ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def same_origin(request: web.Request) -> bool:
    """True when the request has no Origin, or its Origin names this very host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    host = request.headers.get("Host", "")
    return origin in (f"http://{host}", f"https://{host}")


def authorized(request: web.Request, token: str | None, listen_host: str, *, presented: str | None = None) -> bool:
    if not same_origin(request):
        return False
    if presented is None:
        header = request.headers.get("Authorization", "")
        presented = header[7:] if header[:7].lower() == "bearer " else ""
    if token is None:
        return (_is_loopback(listen_host) or listen_host == "localhost") and _is_loopback(request.remote) and \
            "X-Forwarded-For" not in request.headers and "Forwarded" not in request.headers
    if not presented or len(presented) > MAX_TOKEN_LEN or not presented.isascii():
        return False
    return hmac.compare_digest(presented.encode("ascii"), token.encode("utf-8"))


def unauthorized(request: web.Request) -> web.Response:
    return web.Response(status=401, content_type="application/json",
                        headers={"WWW-Authenticate": "Bearer", "x-request-id": request.get("request_id", "-")},
                        body=error_body("Admin token required: send Authorization: Bearer <LLM_FIREWALL_ADMIN_TOKEN>.",
                                        code="unauthorized", err_type="authentication_error"))
