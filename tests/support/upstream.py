"""A small local OpenAI-compatible server standing in for the real model in tests.

It runs on its own thread and event loop, so sync and async tests can use it alike, records
every request it receives (tests assert that blocked prompts never arrive), and can be scripted:
the next answer's text, SSE chunking, faults (reset mid-stream, slow first byte, 500s).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class RawAnswer:
    """An answer sent exactly as given to any POST (a hostile or broken upstream): `body` whole,
    or a list of chunks written one by one (a stream)."""

    body: bytes | list[bytes]
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


@dataclass
class Script:
    reply: str = "Hello from the test upstream."
    chunks: list[str] | None = None  # explicit SSE content deltas
    tool_args: list[str] | None = None  # streamed tool-call argument deltas
    status: int = 200
    delay_first_byte: float = 0.0
    reset_after_chunks: int | None = None  # close the connection after N content events
    chunk_delay: float = 0.0
    include_usage: bool = True
    prompt_tokens: int = 11
    completion_tokens: int = 7
    echo_system: bool = False  # answer with the system prompt it was sent (a leaking model)
    raw: RawAnswer | None = None  # answer with exactly these bytes instead


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


@dataclass
class TestUpstream:
    __test__ = False  # a fixture, not a test class

    host: str = "127.0.0.1"
    port: int = 0
    script: Script = field(default_factory=Script)
    requests: list[Recorded] = field(default_factory=list)
    ssl_context: ssl.SSLContext | None = None  # set: serves https (tests of TLS upstreams)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}/v1"

    def reset(self) -> None:
        self.script = Script()
        self.requests.clear()

    # -- handlers ---------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        self.requests.append(Recorded(request.method, request.path_qs, dict(request.headers), body))
        return body

    async def _raw(self, request: web.Request, answer: RawAnswer) -> web.StreamResponse:
        if isinstance(answer.body, bytes):
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        resp = web.StreamResponse(status=answer.status, headers=answer.headers)
        await resp.prepare(request)
        for chunk in answer.body:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raw = await self._record(request)
        s = self.script
        if s.raw is not None:
            return await self._raw(request, s.raw)
        if s.delay_first_byte:
            await asyncio.sleep(s.delay_first_byte)
        if s.status != 200:
            return web.json_response({"error": {"message": "upstream failure", "type": "server_error",
                                                "param": None, "code": None}}, status=s.status)
        body = orjson.loads(raw)
        if s.echo_system:
            system = [m.get("content") for m in body.get("messages", []) if m.get("role") == "system"]
            s = Script(**{**s.__dict__, "reply": "My instructions say: " + " ".join(map(str, system)),
                          "chunks": None})
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        usage = {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
                 "total_tokens": s.prompt_tokens + s.completion_tokens}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": s.reply}
            if s.tool_args is not None:
                message = {"role": "assistant", "content": None, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "run", "arguments": "".join(s.tool_args)}}]}
            return web.json_response({"id": cid, "object": "chat.completion", "created": 1,
                                      "model": body.get("model", "m"),
                                      "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                      "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def ev(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return b"data: " + orjson.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": 1, "model": body.get("model", "m"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"

        await resp.write(ev({"role": "assistant", "content": ""}))
        if s.tool_args is not None:
            await resp.write(ev({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                 "function": {"name": "run", "arguments": ""}}]}))
            for part in s.tool_args:
                await resp.write(ev({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
        chunks = s.chunks if s.chunks is not None else ([] if s.tool_args is not None else [s.reply])
        for i, part in enumerate(chunks):
            if s.reset_after_chunks is not None and i >= s.reset_after_chunks:
                await asyncio.sleep(0.3)  # let what was sent arrive before the connection drops
                request.transport.close()  # type: ignore[union-attr]
                return resp
            await resp.write(ev({"content": part}))
            if s.chunk_delay:
                await asyncio.sleep(s.chunk_delay)
        await resp.write(ev({}, "stop"))
        if s.include_usage and (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(b"data: " + orjson.dumps({"id": cid, "object": "chat.completion.chunk", "created": 1,
                                                      "model": body.get("model", "m"), "choices": [],
                                                      "usage": usage}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def models(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"object": "list", "data": [
            {"id": "test-model", "object": "model", "created": 1, "owned_by": "tests"}]})

    async def embeddings(self, request: web.Request) -> web.Response:
        raw = await self._record(request)
        body = orjson.loads(raw)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return web.json_response({"object": "list", "model": body.get("model", "e"),
                                  "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                                           for i in range(len(inputs))],
                                  "usage": {"prompt_tokens": 3, "total_tokens": 3}})

    async def anything(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if self.script.raw is not None and request.method == "POST":
            return await self._raw(request, self.script.raw)
        return web.json_response({"ok": True, "path": request.path})

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> TestUpstream:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            app = web.Application(client_max_size=8 * 1024 * 1024)  # as large as real APIs take
            app.router.add_post("/v1/chat/completions", self.chat)
            app.router.add_get("/v1/models", self.models)
            app.router.add_post("/v1/embeddings", self.embeddings)
            app.router.add_route("*", "/{tail:.*}", self.anything)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(boot())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="test-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test upstream did not start")
        return self

    def stop(self) -> None:
        async def down() -> None:
            await self._runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(down(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
