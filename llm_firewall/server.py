"""Serving the app: aiohttp's runner, with connection-level errors in the OpenAI error shape.

Why not `web.run_app` alone: a request aiohttp's parser rejects (bad request line, invalid
header, smuggling attempt) never reaches the app or its middleware; the connection's
`RequestHandler.handle_error` answers it with a plain-text `HTTP/1.0 400`. An OpenAI SDK
cannot read that, and it tells a prober which server sits behind. aiohttp takes no handler
class as an option, so the runner builds its `web.Server` with a handler that answers in the
same JSON shape as every other refusal.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from llm_firewall.middlewares import new_request_id
from llm_firewall.proxy.openai_wire import error_body

_CODES = {400: "invalid_http_request", 413: "request_too_large", 414: "request_target_too_long",
          431: "request_header_too_large", 500: "internal_error", 504: "handler_timeout"}


class OpenAIErrorHandler(RequestHandler):
    """A connection whose own error answers (parser rejections, 500s outside the app) are JSON."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs, and refuses if bytes were sent
        text = "The request could not be parsed as HTTP/1.1." if status == 400 else _phrase(status)
        resp = web.Response(status=status, content_type="application/json",
                            body=error_body(text, code=_CODES.get(status, "http_error"),
                                            err_type="server_error" if status >= 500 else "invalid_request_error"),
                            headers={"x-request-id": new_request_id()})
        resp.force_close()
        return resp


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return OpenAIErrorHandler(self, loop=self._loop, **self._kwargs)


class FirewallRunner(web.AppRunner):
    """`web.AppRunner` whose connections are `OpenAIErrorHandler`s."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # same state, only the connection factory differs
        return server


def serve(app: web.Application, *, host: str, port: int, loop: asyncio.AbstractEventLoop | None = None,
          **runner_kwargs: Any) -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully (what `web.run_app` does)."""
    loop = loop or asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    runner = FirewallRunner(app, handle_signals=True, **runner_kwargs)

    async def main() -> None:
        await runner.setup()
        await web.TCPSite(runner, host, port, backlog=1024).start()
        await asyncio.Event().wait()

    task = loop.create_task(main())
    try:
        loop.run_until_complete(task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        loop.run_until_complete(runner.cleanup())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
