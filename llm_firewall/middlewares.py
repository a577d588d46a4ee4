"""The middleware that runs before routing: request ids, target hygiene, error shapes, headers.

Target checks run on the raw request line, because the router only ever sees the
already-decoded path and would happily match `/v1/../admin`. /v1 targets are decided by the
gateway (`proxy.target.resolve`, which knows the policy's passthrough endpoints); every other
target is checked here.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from aiohttp import HttpVersion, web

from llm_firewall.proxy.openai_wire import error_body
from llm_firewall.proxy.target import V1, TargetRefused, check_local

log = logging.getLogger("llm_firewall.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, code: str, rid: str, err_type: str = "invalid_request_error") -> web.Response:
    return web.Response(status=status, body=error_body(message, code=code, err_type=err_type),
                        content_type="application/json", headers={"x-request-id": rid})


# The X-Request-ID a client sent, kept beside the firewall's own id (alerts, audit) but never used
# as one: a client could otherwise make its requests look like another's in the audit trail.
CLIENT_REQUEST_ID: ContextVar[str | None] = ContextVar("client_request_id", default=None)

_PREFIX = f"req_{secrets.token_hex(6)}"
_counter = itertools.count(1)


def new_request_id() -> str:
    """Unique per process start and cheap: a random prefix plus a counter (no uuid per request)."""
    return f"{_PREFIX}{next(_counter):x}"


HTTP11_OR_10 = HttpVersion(1, 0)

_PAGE_CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
             "frame-ancestors 'none'")


@web.middleware
async def http_frame(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, target hygiene, error shapes and security headers, in one layer.

    One middleware instead of three: every layer is a coroutine frame aiohttp awaits on every
    request, and this is the proxy's hot path. Order of the old chain is kept: the id first,
    then the target check (its 400 carries no security headers), then the handler, whose
    response gets the security headers, then the error shapes around all of it."""
    rid = new_request_id()
    request["request_id"] = rid
    given = request.headers.get("X-Request-ID")  # set on every request: a keep-alive connection may share a context
    CLIENT_REQUEST_ID.set(given[:64] if given and given.isascii() and given.isprintable() else None)
    if request.version < HTTP11_OR_10:  # a request line without a version (HTTP/0.9 style)
        return _error(400, "HTTP/1.0 or HTTP/1.1 is required.", "invalid_http_request", rid)
    raw = request.raw_path
    if not raw.startswith(V1):
        try:
            check_local(raw)
        except TargetRefused as exc:
            return _error(exc.status, exc.message, exc.code, rid)
    try:
        response: web.StreamResponse = await handler(request)
        if not response.prepared:
            _add_security_headers(request, response)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status, "http_error")
            return _error(exc.status, exc.reason, code, rid)
        exc.headers["x-request-id"] = rid
        raise
    except Exception:
        log.exception("unhandled error (request %s)", rid)
        return _error(500, "The firewall hit an internal error.", "internal_error", rid, "server_error")
    if not response.prepared:
        response.headers["x-request-id"] = rid
    return response


def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    path = request.path
    if path == "/" or path.startswith("/static/"):
        headers.setdefault("Content-Security-Policy", _PAGE_CSP)
        headers.setdefault("X-Frame-Options", "DENY")
