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


async def eventually(predicate, timeout: float = 10.0) -> None:
    """Wait (bounded) until `predicate()` holds; fails the test with a clear message otherwise."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached within the test's safety bound")
        await asyncio.sleep(0.01)


class Enforcement:
    """Stands in for the server's enforcement layer: records what the SOC asked it to do."""

    def __init__(self) -> None:
        self.calls: list = []
        self.audit: list[tuple[str, dict]] = []
        self.delay = 0.0

    async def remediate(self, playbook):
        import asyncio

        if self.delay:
            await asyncio.sleep(self.delay)
        self.calls.append(playbook)
        return [{"status": "pending_approval" if a.requires_approval else "done"} for a in playbook.actions]

    async def audit_append(self, kind: str, record: dict) -> int:
        self.audit.append((kind, record))
        return len(self.audit)

    def executed(self, kind: str | None = None) -> list:
        return [a for pb in self.calls for a in pb.actions if kind is None or a.kind == kind]


@pytest.fixture
def enforcement() -> Enforcement:
    return Enforcement()


@pytest.fixture
def wait_for():
    return eventually
