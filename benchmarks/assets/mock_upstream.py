#!/usr/bin/env python3
# Reference baseline: an unmodified copy of the project's public performance yardstick
# (shared/bench/mock_upstream.py), shipped so `llm-firewall bench` can run anywhere.
"""Minimal aiohttp mock of an OpenAI-compatible upstream (static canned bodies).

POST /v1/chat/completions          -> JSON, or SSE when the body has "stream": true
POST /stream/v1/chat/completions   -> always SSE (same path convention as the nginx mock)

SSE is written one `data:` event per write() (realistic framing); set MOCK_SSE_ONEWRITE=1
to send the whole stream in one write, MOCK_SSE_DELAY_MS to pace events.
Usage: mock_upstream.py PORT   (env MOCK_UVLOOP=1 to use uvloop)
"""
import asyncio
import os
import re
import sys

from aiohttp import web

HERE = os.path.dirname(os.path.abspath(__file__))
RESP = open(os.path.join(HERE, "payloads", "response.json"), "rb").read()
SSE = open(os.path.join(HERE, "payloads", "stream.sse"), "rb").read()
EVENTS = [e + b"\n\n" for e in SSE.split(b"\n\n") if e]
ONEWRITE = os.environ.get("MOCK_SSE_ONEWRITE") == "1"
DELAY = float(os.environ.get("MOCK_SSE_DELAY_MS", "0")) / 1000.0
STREAM_RE = re.compile(rb'"stream"\s*:\s*true')


async def stream(request):
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"})
    await resp.prepare(request)
    if ONEWRITE:
        await resp.write(SSE)
    else:
        for ev in EVENTS:
            await resp.write(ev)
            if DELAY:
                await asyncio.sleep(DELAY)
    await resp.write_eof()
    return resp


async def chat(request):
    body = await request.read()
    if STREAM_RE.search(body):
        return await stream(request)
    return web.Response(body=RESP, content_type="application/json")


async def chat_stream(request):
    await request.read()
    return await stream(request)


def main():
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/stream/v1/chat/completions", chat_stream)
    loop = None
    if os.environ.get("MOCK_UVLOOP") == "1":
        import uvloop
        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                backlog=1024, loop=loop)


if __name__ == "__main__":
    main()
