"""The listening socket: aiohttp's request handler plus the client-side bounds it lacks.

Two things aiohttp does not offer as options. First, a request its parser rejects (bad request
line, invalid header, smuggling attempt) never reaches the app or its middleware: the
connection's `RequestHandler.handle_error` answers with a plain-text `HTTP/1.0 400`, which an
OpenAI SDK cannot read and which tells a prober which server sits behind; the handler here
answers in the same JSON shape as every other refusal. Second, resource bounds:

aiohttp closes idle keep-alive connections, but gives a request head or body as long as the
client likes and accepts connections until the process runs out of file descriptors: a thousand
slowloris connections were enough to stop `/healthz` answering. This module adds a deadline for
each request head and body, and a cap on open connections that, when reached, closes the oldest
idle connection (or else the oldest still uploading its body) to admit a new one; a request
being answered is never cut to make room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
from http import HTTPStatus

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from llm_firewall.config import Settings
from llm_firewall.middlewares import new_request_id
from llm_firewall.proxy.openai_wire import error_body

log = logging.getLogger("llm_firewall.server")

# Descriptors kept free beyond two per client connection (its own and an upstream one): the
# data dir, Redis, log files, the demo upstream.
FD_RESERVE = 256

_BUSY_BODY = error_body("The firewall has too many open connections; retry shortly.",
                        code="server_busy", err_type="server_error")
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
         b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n" % len(_BUSY_BODY)) + _BUSY_BODY


class BodyTimeout(web.HTTPRequestTimeout, TimeoutError):
    """What `request.read()` raises once a body is overdue: the handler answers 408 with this
    JSON, and aiohttp, which treats a TimeoutError as the end of its lingering read, then closes
    the connection instead of logging an unhandled error."""

    def __init__(self, seconds: float) -> None:
        super().__init__(body=error_body(f"The request body did not arrive within {seconds:g} s.",
                                         code="request_timeout"), content_type="application/json")


def _body_overdue(payload: StreamReader, seconds: float) -> None:
    if not payload.is_eof() and payload.exception() is None:
        payload.set_exception(BodyTimeout(seconds))


_CODES = {400: "invalid_http_request", 413: "request_too_large", 414: "request_target_too_long",
          431: "request_header_too_large", 500: "internal_error", 504: "handler_timeout"}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class GuardedHandler(RequestHandler):
    """One client connection, with a deadline for each request head and each request body.

    The head deadline runs from the connection's opening for the first request and from the
    first byte for the next ones (the keep-alive timeout covers the quiet time between them).
    Timers are only set for heads and bodies that arrive in pieces; a request that arrives in one
    read, the usual case, costs nothing more.
    """

    __slots__ = ("_listener", "_head_for")

    def __init__(self, listener: "Listener") -> None:
        super().__init__(listener.server, loop=listener.loop, **listener.handler_args)
        self._listener = listener
        self._head_for = 0

    @property
    def idle(self) -> bool:
        """Waiting for a request head: nothing is being answered on this connection."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    @property
    def uploading(self) -> bool:
        """A request is being handled and its body has not all arrived."""
        request = self._current_request
        return request is not None and not request.content.is_eof()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._listener.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            payload = self._messages[-1][1] if self._messages else None  # only the last can be incomplete
            if payload is not None and not payload.is_eof():
                seconds = self._listener.body_timeout
                self._loop.call_later(seconds, _body_overdue, payload, seconds)
        elif self._head_for != self._request_count and self.idle:
            self._arm_head()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The connection's own error answers (parser rejections, 500s outside the app) as JSON."""
        super().handle_error(request, status, exc, message)  # logs, and refuses if bytes were sent
        text = "The request could not be parsed as HTTP/1.1." if status == 400 else _phrase(status)
        resp = web.Response(status=status, content_type="application/json",
                            body=error_body(text, code=_CODES.get(status, "http_error"),
                                            err_type="server_error" if status >= 500 else "invalid_request_error"),
                            headers={"x-request-id": new_request_id()})
        resp.force_close()
        return resp

    def _arm_head(self) -> None:
        self._head_for = count = self._request_count
        self._loop.call_later(self._listener.header_timeout, self._head_overdue, count)

    def _head_overdue(self, count: int) -> None:
        if self._request_count == count and self.idle:  # that head never completed
            self.force_close()


class _Refused(asyncio.Protocol):
    """A connection over the cap when none is idle: a 503 at once, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(_BUSY)  # type: ignore[attr-defined]
        transport.close()


class Listener:
    """The protocol factory: one GuardedHandler per connection, at most `cap` open at once."""

    def __init__(self, server: web.Server, settings: Settings, cap: int) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        timeouts = settings.client_timeouts
        self.header_timeout = timeouts.header
        self.body_timeout = timeouts.body
        access_log = logging.getLogger("aiohttp.access") if settings.access_log else None
        # Bodies are decoded by the gateway with a bound (proxy/content_coding.py), not by aiohttp
        # as they arrive: a gzip bomb inflated there held the loop for seconds.
        self.handler_args = {"keepalive_timeout": timeouts.keepalive, "access_log": access_log,
                             "auto_decompress": False}
        self.cap = cap
        self.open: dict[GuardedHandler, None] = {}  # in order of arrival, the oldest first

    def __call__(self) -> asyncio.Protocol:
        if len(self.open) >= self.cap and not self._make_room():
            return _Refused()
        handler = GuardedHandler(self)
        self.open[handler] = None
        return handler

    def forget(self, handler: GuardedHandler) -> None:
        self.open.pop(handler, None)

    def _make_room(self) -> bool:
        """Close the oldest idle connection, else the oldest still sending its request body (a
        slow upload must not hold a slot that a health check needs); False when every connection
        is being answered."""
        victim = None
        for handler in self.open:
            if handler.idle:
                victim = handler
                break
            if victim is None and handler.uploading:
                victim = handler
        if victim is None:
            return False
        del self.open[victim]
        victim.force_close()
        return True


def connection_cap(wanted: int) -> int:
    """`wanted`, or fewer when the process may not open enough files for it.

    Running out of descriptors stops `accept` for everyone, health checks included, so the cap
    must fit: the soft limit is raised towards the hard one first, and what still does not fit
    lowers the cap (with a warning)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    cap = max(1, (soft - FD_RESERVE) // 2)
    log.warning("LLM_FIREWALL_MAX_CONNECTIONS lowered from %d to %d to fit the open-file limit (%d)",
                wanted, cap, soft)
    return cap


async def _serve(app: web.Application, settings: Settings) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=30.0)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        listener = Listener(runner.server, settings, connection_cap(settings.limits.max_connections))
        server = await loop.create_server(listener, settings.host, settings.port, backlog=1024,
                                          reuse_address=True, reuse_port=settings.reuse_port or None)
        try:
            await stop.wait()
        finally:
            server.close()
    finally:
        await runner.cleanup()


def serve(app: web.Application, settings: Settings) -> None:
    """Listen until SIGINT or SIGTERM, then shut down gracefully (requests in flight get 30 s)."""
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(app, settings))
