"""Middlewares that run before routing: request ids, target hygiene, and error shapes.

Target checks run here, on the raw request line, because the router only ever sees the
already-decoded path and would happily match `/v1/../admin`.
"""

from __future__ import annotations

import logging
import itertools
import secrets
from typing import Awaitable, Callable

from aiohttp import web

from llm_firewall.proxy.forward import TargetError, check_target
from llm_firewall.proxy.openai_wire import error_body

log = logging.getLogger("llm_firewall.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, code: str, rid: str, err_type: str = "invalid_request_error") -> web.Response:
    return web.Response(status=status, body=error_body(message, code=code, err_type=err_type),
                        content_type="application/json", headers={"x-request-id": rid})


_PREFIX = f"req_{secrets.token_hex(6)}"
_counter = itertools.count(1)


def new_request_id() -> str:
    """Unique per process start and cheap: a random prefix plus a counter (no uuid per request)."""
    return f"{_PREFIX}{next(_counter):x}"


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id (kept from the client when it is short and printable)."""
    given = request.headers.get("X-Request-ID", "")
    rid = given if 0 < len(given) <= 64 and given.isascii() and given.isprintable() else new_request_id()
    request["request_id"] = rid
    try:
        response = await handler(request)
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


@web.middleware
async def target_hygiene(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse request targets that could address anything but our own routes."""
    try:
        check_target(request.raw_path)
    except TargetError as exc:
        return _error(400, str(exc), "invalid_request_target", request.get("request_id", "-"))
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path == "/" or request.path.startswith("/static/"):
            response.headers.setdefault("Content-Security-Policy",
                                        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
                                        "frame-ancestors 'none'")
            response.headers.setdefault("X-Frame-Options", "DENY")
    return response
