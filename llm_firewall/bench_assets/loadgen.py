#!/usr/bin/env python3
"""Built-in load generator for `llm-firewall bench`, used when `wrk` is not installed.

Runs in its own process (like wrk) so the client never competes with the benchmark's own
bookkeeping. It speaks raw HTTP/1.1 keep-alive over asyncio streams rather than through an
HTTP client library, because a library client would cap the measurable rate far below what the
proxies can serve. Two modes:

  load URL --connections C --duration S --body FILE [--identities N]
      C connections posting FILE for S seconds; prints one `WRKJSON {...}` line with the same
      fields as post.lua. Identities follow post.lua (a new address and session per request,
      5,000 users) or, with --identities N, identity n % N with its own address, user, session.
  sse URL --requests N --body FILE
      N sequential streaming requests; prints one `SSEJSON {...}` line with, per request, the
      client-side arrival time of every SSE event and whether it carried content text.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from urllib.parse import urlsplit

AUTH = "Bearer sk-bench-7f3a9c2e41d84b6aa0e5f1c2d3b4a596"
TIMEOUT_S = 10.0


class HttpError(Exception):
    """The server answered with something that is not a well-formed HTTP/1.1 response."""


def identity_headers(n: int, identities: int) -> str:
    """Headers giving request n its client identity, the same scheme as the wrk scripts."""
    if identities:
        i = n % identities
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        return f"X-Forwarded-For: {ip}\r\nX-User-ID: mem-user-{i}\r\nX-Session-ID: mem-session-{i}\r\n"
    ip = f"198.18.{(n // 250) % 250}.{n % 250}"
    return f"X-Forwarded-For: {ip}\r\nX-User-ID: bench-{n % 5000}\r\nX-Session-ID: bench-session-{n}\r\n"


def build_request(host: str, path: str, body: bytes, n: int, identities: int) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: {AUTH}\r\n{identity_headers(n, identities)}"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HttpError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers


async def iter_body(reader: asyncio.StreamReader, headers: dict[str, str]):
    """Yield the body as it arrives, de-chunked, so stream events can be timestamped."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected: the final CRLF
                return
            chunk = await reader.readexactly(size + 2)
            yield chunk[:-2]
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            chunk = await reader.read(min(left, 65536))
            if not chunk:
                raise HttpError("connection closed inside the body")
            left -= len(chunk)
            yield chunk
    else:  # delimited by close
        while chunk := await reader.read(65536):
            yield chunk


def keeps_alive(headers: dict[str, str]) -> bool:
    return headers.get("connection", "").lower() != "close"


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}


async def load_worker(host: str, port: int, path: str, body: bytes, counter: itertools.count,
                      identities: int, deadline: float, stats: Stats) -> None:
    writer = None
    try:
        while time.perf_counter() < deadline:
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S)
                except (OSError, asyncio.TimeoutError):
                    stats.errors["connect"] += 1
                    await asyncio.sleep(0.01)
                    continue
            request = build_request(f"{host}:{port}", path, body, next(counter), identities)
            t0 = time.perf_counter()
            try:
                writer.write(request)
                status, headers = await asyncio.wait_for(read_head(reader), TIMEOUT_S)
                async for _ in iter_body(reader, headers):
                    pass
            except asyncio.TimeoutError:
                stats.errors["timeout"] += 1
                writer.close()
                writer = None
                continue
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError, ValueError):
                stats.errors["read"] += 1
                writer.close()
                writer = None
                continue
            stats.latencies.append(time.perf_counter() - t0)
            if status >= 400:
                stats.errors["status"] += 1
            if not keeps_alive(headers):
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q / 100.0 * len(sorted_values)))]


async def run_load(url: str, connections: int, duration: float, body: bytes, identities: int) -> dict:
    parts = urlsplit(url)
    path = (parts.path.rstrip("/") or "") + "/v1/chat/completions"
    stats = Stats()
    counter = itertools.count()
    start = time.perf_counter()
    deadline = start + duration
    await asyncio.gather(*(load_worker(parts.hostname, parts.port, path, body, counter, identities, deadline, stats)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - start
    lat = sorted(stats.latencies)
    e = stats.errors
    return {"requests": len(lat), "duration_us": int(elapsed * 1e6), "err_connect": e["connect"],
            "err_read": e["read"], "err_write": e["write"], "err_status": e["status"],
            "err_timeout": e["timeout"], "p50_us": int(percentile(lat, 50) * 1e6),
            "p99_us": int(percentile(lat, 99) * 1e6)}


def has_content(event: bytes) -> bool:
    """Does this SSE event carry model text (the first token a user would see)?"""
    for line in event.split(b"\n"):
        if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
            try:
                doc = json.loads(line[5:])
            except ValueError:
                return False
            for choice in doc.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    return True
    return False


async def one_stream(host: str, port: int, path: str, body: bytes, n: int) -> dict:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S)
    try:
        request = build_request(f"{host}:{port}", path, body, n, 0)
        t0 = time.perf_counter()
        writer.write(request)
        status, headers = await asyncio.wait_for(read_head(reader), TIMEOUT_S)
        events: list[list] = []
        buf = b""
        async for chunk in iter_body(reader, headers):
            now = time.perf_counter() - t0
            buf += chunk.replace(b"\r\n", b"\n")
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if event.strip():
                    events.append([now, has_content(event)])
        return {"status": status, "events": events}
    finally:
        writer.close()


async def run_sse(url: str, requests: int, body: bytes) -> dict:
    parts = urlsplit(url)
    path = (parts.path.rstrip("/") or "") + "/v1/chat/completions"
    results = []
    for n in range(requests):
        try:
            results.append(await asyncio.wait_for(one_stream(parts.hostname, parts.port, path, body, n), 60))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
            results.append({"status": 0, "error": type(exc).__name__, "events": []})
    return {"requests": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["load", "sse"])
    parser.add_argument("url")
    parser.add_argument("--body", required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--identities", type=int, default=0)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args(argv)
    body = open(args.body, "rb").read()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.mode == "load":
        result = runner(run_load(args.url, args.connections, args.duration, body, args.identities))
        print("WRKJSON " + json.dumps(result), flush=True)
    else:
        result = runner(run_sse(args.url, args.requests, body))
        print("SSEJSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
