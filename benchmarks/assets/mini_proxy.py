#!/usr/bin/env python3
# Reference baseline: an unmodified copy of the project's public performance yardstick
# (shared/bench/mini_proxy.py), shipped so `llm-firewall bench` can run anywhere.
"""Minimal aiohttp reverse proxy with no inspection: the floor any aiohttp-based proxy pays.

Usage: mini_proxy.py PORT UPSTREAM_BASE  (e.g. 18020 http://127.0.0.1:18001); PROXY_UVLOOP=1 for uvloop.
Streaming responses (text/event-stream) are relayed chunk by chunk, never buffered.
"""
import os
import sys

import aiohttp
from aiohttp import web

PORT, UPSTREAM = int(sys.argv[1]), sys.argv[2].rstrip("/")
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
       "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


async def handle(request):
    body = await request.read()
    hdrs = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    session = request.app["session"]
    async with session.request(request.method, UPSTREAM + request.rel_url.path_qs,
                               data=body, headers=hdrs) as up:
        rh = {k: v for k, v in up.headers.items() if k.lower() not in HOP}
        if up.content_type == "text/event-stream":
            resp = web.StreamResponse(status=up.status, headers=rh)
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        data = await up.read()
        return web.Response(body=data, status=up.status, headers=rh)


async def on_startup(app):
    app["session"] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None),
        auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60))


async def on_cleanup(app):
    await app["session"].close()


def main():
    app = web.Application(client_max_size=8 << 20)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", handle)
    loop = None
    if os.environ.get("PROXY_UVLOOP") == "1":
        import uvloop
        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=PORT, access_log=None, print=None,
                backlog=1024, loop=loop)


if __name__ == "__main__":
    main()
