"""Admin authentication shared by the admin API, the live feed and the demo endpoints.

A bearer token compared in constant time. With no token configured, only a loopback listener
reached directly from loopback, under a loopback `Host`, is trusted (the out-of-the-box demo).
Browser requests are refused when their Origin is not this very host, and, without a token, when
the Host is not a loopback name: a page whose own name resolves to 127.0.0.1 (DNS rebinding) is
same-origin with itself, and only its Host header gives it away.
"""

from __future__ import annotations

import hmac
import ipaddress
import re

from aiohttp import web

from llm_firewall.proxy.openai_wire import error_body

MAX_TOKEN_LEN = 512
ADMIN_HINT = "Admin token required: send Authorization: Bearer <LLM_FIREWALL_ADMIN_TOKEN>."


def _is_loopback(addr: str | None) -> bool:
    try:
        return addr is not None and ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?", re.ASCII)


def loopback_host(host: str | None) -> bool:
    """True for a Host header that names this machine by a loopback name or address, any port:
    `localhost`, `127.x.y.z`, `[::1]`. Names only the operator's machine gives loopback meaning to;
    a name from the DNS (which an attacker controls) never qualifies."""
    match = _HOST.fullmatch(host or "")
    if match is None:
        return False
    name = match["name"].lower()
    if name == "localhost":
        return True
    bracketed = name.startswith("[")
    try:
        address = ipaddress.ip_address(name[1:-1] if bracketed else name)
    except ValueError:
        return False
    return address.is_loopback and bracketed == (address.version == 6)


def same_origin(request: web.Request) -> bool:
    """True when the request has no Origin, or its Origin names this very host; a browser's
    own word that the request is cross-site (Sec-Fetch-Site) is believed too, for requests
    that carry no Origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site", "none") in ("none", "same-origin")
    host = request.headers.get("Host", "")
    return origin in (f"http://{host}", f"https://{host}")


def browser_refusal(request: web.Request, token: str | None) -> web.Response | None:
    """The 403 for what no token could fix: a foreign Origin, or, without a token, a Host that
    is not a loopback name (DNS rebinding); None when neither applies."""
    if not same_origin(request):
        return forbidden(request, "Cross-origin requests to this API are refused.", "cross_origin")
    if token is None and not loopback_host(request.headers.get("Host")):
        return forbidden(request, "Without LLM_FIREWALL_ADMIN_TOKEN this API answers only requests addressed "
                                  "to localhost, 127.0.0.1 or [::1].", "host_not_allowed")
    return None


def admin_refusal(request: web.Request, token: str | None, listen_host: str, *,
                  presented: str | None = None, also: str | None = None,
                  hint: str = ADMIN_HINT) -> web.Response | None:
    """None when the request may use the admin API, else the answer that refuses it: the
    browser checks' 403, or a 401 when the token (or, without one, loopback) is missing.
    `also`: a second token accepted as well (the guard API takes its own or the admin's)."""
    tokens = [t for t in (token, also) if t]
    refusal = browser_refusal(request, tokens[0] if tokens else None)
    if refusal is not None:
        return refusal
    if not tokens:
        local = (_is_loopback(listen_host) or listen_host == "localhost") and _is_loopback(request.remote) and \
            "X-Forwarded-For" not in request.headers and "Forwarded" not in request.headers
        return None if local else unauthorized(request, hint)
    if presented is None:
        header = request.headers.get("Authorization", "")
        presented = header[7:] if header[:7].lower() == "bearer " else ""
    if not presented or len(presented) > MAX_TOKEN_LEN or not presented.isascii():
        return unauthorized(request, hint)
    given = presented.encode("ascii")
    matched = [hmac.compare_digest(given, t.encode("utf-8")) for t in tokens]  # each compared, always
    return None if any(matched) else unauthorized(request, hint)


def forbidden(request: web.Request, message: str, code: str) -> web.Response:
    return web.Response(status=403, content_type="application/json",
                        headers={"x-request-id": request.get("request_id", "-")},
                        body=error_body(message, code=code, err_type="permission_error"))


def unauthorized(request: web.Request, hint: str = ADMIN_HINT) -> web.Response:
    return web.Response(status=401, content_type="application/json",
                        headers={"WWW-Authenticate": "Bearer", "x-request-id": request.get("request_id", "-")},
                        body=error_body(hint, code="unauthorized", err_type="authentication_error"))
