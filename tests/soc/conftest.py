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
        self.fail_first = 0  # answer 503 to this many requests first (a target coming back)
        self.hits: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(await request.json())
        status = 503 if len(self.hits) <= self.fail_first else self.status
        return web.json_response({"ok": status < 400}, status=status)


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


class FakeModel:
    """A tiny OpenAI-compatible chat endpoint whose verdict depends on the alert's rule id."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.delay = 0.0

    async def chat(self, request: web.Request) -> web.Response:
        import asyncio
        import json

        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.delay:
            await asyncio.sleep(self.delay)
        alert = body["messages"][-1]["content"]
        if "BENIGN" in alert:
            verdict = {"verdict": "false_positive", "confidence": 0.85, "reason": "educational question"}
        else:
            verdict = {"verdict": "true_positive", "confidence": 0.9, "reason": "clear override attempt"}
        return web.json_response({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "```json\n" + json.dumps(verdict) + "\n```"}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        })


@pytest.fixture
async def fake_model(aiohttp_server):
    model = FakeModel()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", model.chat)
    server = await aiohttp_server(app, host="127.0.0.1")
    model.base_url = str(server.make_url("/v1"))
    return model
