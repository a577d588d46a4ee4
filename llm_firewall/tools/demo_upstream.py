"""An offline OpenAI-compatible model, so a fresh machine runs the firewall with no key.

It answers briefly and plausibly from a few canned topics, speaks chat completions (JSON and
SSE), legacy completions, embeddings and `/v1/models`, and reports `usage` like a real API.
It is a stand-in upstream, not part of the security path: the firewall talks to it over HTTP
exactly as it would to a real provider.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

MODEL = "demo-mini"
MODELS = (MODEL, "demo-embed")

_TOPICS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(hello|hi|hey|how are you)\b", re.I),
     "Hello! I'm doing well, thanks for asking. How can I help you today?"),
    (re.compile(r"\bpython\b.*\b(error|exception)s?\b|\b(error|exception)s?\b.*\bpython\b", re.I),
     "In Python you handle errors with try/except: wrap the risky call, catch the specific "
     "exception you expect (for example ValueError), and log or recover. Avoid a bare except, "
     "which hides real bugs."),
    (re.compile(r"\b(weather|rain|sunny)\b", re.I),
     "I can't see live weather offline, but a local forecast service will have today's figures."),
    (re.compile(r"\b(sql|database|query)\b", re.I),
     "Use parameterised queries: pass values separately from the SQL text so the driver quotes "
     "them safely. That prevents SQL injection and makes queries easier to cache."),
    (re.compile(r"\b(firewall|security|attack)\b", re.I),
     "A firewall for language models inspects prompts and answers, blocks attacks such as prompt "
     "injection, and records every alert so a security team can act on it."),
)
_DEFAULT = ("Here is a short answer: break the task into small steps, check each one, and ask "
            "me for detail on any step you want to explore further.")


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def answer_for(text: str) -> str:
    """Pick the canned answer for a prompt; deterministic so tests and demos are repeatable.

    Only the prompt's end is read: the demo model shares the firewall's event loop, and its topic
    patterns over a 4 MB prompt took ~0.4 s, during which nothing else was served."""
    text = text[-4096:]
    for pattern, reply in _TOPICS:
        if pattern.search(text):
            return reply
    return _DEFAULT


def count_tokens(text: str) -> int:
    """A rough token count (about four characters a token), as real APIs report in `usage`."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _prompt_tokens(body: dict[str, Any]) -> int:
    return count_tokens(orjson.dumps(body.get("messages") or body.get("prompt") or "").decode())


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


async def chat(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    reply = answer_for(_last_user_text(body))
    model = body.get("model") or MODEL
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    usage = {"prompt_tokens": _prompt_tokens(body), "completion_tokens": count_tokens(reply)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if not body.get("stream"):
        return web.Response(body=orjson.dumps({
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "finish_reason": "stop"}],
            "usage": usage,
        }), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    await resp.write(event({"role": "assistant", "content": ""}))
    for word in _words(reply):
        await resp.write(event({"content": word}))
        await asyncio.sleep(0.01)
    await resp.write(event({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(b"data: " + orjson.dumps({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage}) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def completions(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    reply = answer_for(_last_user_text(body))
    usage = {"prompt_tokens": _prompt_tokens(body), "completion_tokens": count_tokens(reply)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return web.json_response({
        "id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
        "model": body.get("model") or MODEL,
        "choices": [{"index": 0, "text": reply, "finish_reason": "stop", "logprobs": None}],
        "usage": usage,
    })


def _embedding(text: str, dims: int = 16) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    raw = [(b - 127.5) / 127.5 for b in digest[:dims]]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


async def embeddings(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    inputs = body.get("input")
    texts = inputs if isinstance(inputs, list) else [inputs]
    texts = [t if isinstance(t, str) else orjson.dumps(t).decode() for t in texts]
    tokens = sum(count_tokens(t) for t in texts)
    return web.json_response({
        "object": "list", "model": body.get("model") or "demo-embed",
        "data": [{"object": "embedding", "index": i, "embedding": _embedding(t)} for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [
        {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "llm-firewall-demo"} for m in MODELS]})


def create_demo_app(max_body_bytes: int = 1024**2) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    return app


async def start_demo_upstream(host: str = "127.0.0.1", max_body_bytes: int = 1024**2) -> tuple[web.AppRunner, str]:
    """Serve the demo model on an ephemeral loopback port; returns the runner and its base URL.

    It takes bodies as large as the firewall in front of it does (`max_body_bytes`), so that a
    request the firewall lets through is never refused by the demo model for its size."""
    runner = web.AppRunner(create_demo_app(max_body_bytes), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{host}:{port}/v1"
