"""Small real servers the SOC tests talk to (webhook receivers, an OpenAI-compatible model)."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A webhook target that records what it got and answers with a configurable status."""

    def __init__(self) -> None:
        self.status = 200
        self.hits: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(await request.json())
        return web.json_response({"ok": self.status < 400}, status=self.status)


@pytest.fixture
def unused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: a webhook target or model that is down."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
async def receiver(aiohttp_server):
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{token}", rec.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    rec.url = str(server.make_url("/hook/T0KEN-abcdef"))
    return rec
