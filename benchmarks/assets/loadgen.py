#!/usr/bin/env python3
"""Built-in load generator for `llm-firewall bench`, used when `wrk` is not installed.

Runs in its own process (like wrk) so the client never competes with the benchmark's own
bookkeeping. It speaks raw HTTP/1.1 keep-alive over asyncio streams rather than through an
HTTP client library, because a library client would cap the measurable rate far below what the
proxies can serve. Two modes:

  load URL --bodies FILE --connections C --duration S [--run R] [--identities N]
      C connections posting the bodies of FILE (one per line, written by benchmarks/traffic.py)
      for S seconds, exactly as assets/traffic.lua does for wrk: request k sends line k % lines
      with its placeholder replaced by "R-k", from identity k (or k % N) of traffic.identity.
      Prints one `WRKJSON {...}` line with the same fields as traffic.lua.
  sse URL --requests N --body FILE [--connections C]
      N streaming requests, C at a time (default 1: one after another); prints one `SSEJSON {...}`
      line with, per request, the client-side arrival time of every SSE event and whether it
      carried content text.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: benchmarks.traffic

from benchmarks.traffic import REF_PLACEHOLDER, identity

TIMEOUT_S = 10.0
SSE_RUN = 0xffff  # streams are benign: stream n comes from identity n of this run number, whatever the round


def bodies_from(path: str, run: int) -> Callable[[int], bytes]:
    """Request k's body: line k % lines of the bodies file, its placeholder replaced by `run-k`."""
    lines = [line for line in Path(path).read_bytes().split(b"\n") if line]
    if not lines:
        raise ValueError(f"{path}: no bodies")
    parts = [line.split(REF_PLACEHOLDER.encode(), 1) for line in lines]

    def body(k: int) -> bytes:
        part = parts[k % len(parts)]
        return part[0] if len(part) == 1 else part[0] + f"{run}-{k}".encode() + part[1]
    return body


class HttpError(Exception):
    """The server answered with something that is not a well-formed HTTP/1.1 response."""


def build_request(host: str, path: str, body: bytes, who: dict[str, str]) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in who.items())
            + f"Content-Length: {len(body)}\r\n\r\n")
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
        self.errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
        self.statuses: Counter[int] = Counter()


async def load_worker(host: str, port: int, path: str, body_for: Callable[[int], bytes], counter: itertools.count,
                      run: int, identities: int, deadline: float, stats: Stats) -> None:
    writer = None
    try:
        while time.perf_counter() < deadline:
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S)
                except (TimeoutError, OSError):
                    stats.errors["connect"] += 1
                    await asyncio.sleep(0.01)
                    continue
            n = next(counter)
            request = build_request(f"{host}:{port}", path, body_for(n), identity(run, n % identities if identities else n))  # noqa: E501
            t0 = time.perf_counter()
            try:
                writer.write(request)
                status, headers = await asyncio.wait_for(read_head(reader), TIMEOUT_S)
                async for _ in iter_body(reader, headers):
                    pass
            except TimeoutError:
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
            stats.statuses[status] += 1
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


async def run_load(url: str, connections: int, duration: float, body_for: Callable[[int], bytes],
                   run: int, identities: int) -> dict:
    parts = urlsplit(url)
    path = (parts.path.rstrip("/") or "") + "/v1/chat/completions"
    stats = Stats()
    counter = itertools.count()
    start = time.perf_counter()
    deadline = start + duration
    await asyncio.gather(*(load_worker(parts.hostname, parts.port, path, body_for, counter, run, identities,
                                       deadline, stats) for _ in range(connections)))
    elapsed = time.perf_counter() - start
    lat = sorted(stats.latencies)
    e = stats.errors
    return {"requests": len(lat), "duration_us": int(elapsed * 1e6), "err_connect": e["connect"],
            "err_read": e["read"], "err_write": e["write"], "err_timeout": e["timeout"],
            "p50_us": int(percentile(lat, 50) * 1e6), "p99_us": int(percentile(lat, 99) * 1e6),
            "status": {str(code): n for code, n in sorted(stats.statuses.items())}}


def content_chars(event: bytes) -> int:
    """How many characters of model text this SSE event carries (what a user would see)."""
    chars = 0
    for line in event.split(b"\n"):
        if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
            try:
                doc = json.loads(line[5:])
            except ValueError:
                return chars
            for choice in doc.get("choices") or ():
                chars += len((choice.get("delta") or {}).get("content") or "")
    return chars


async def one_stream(host: str, port: int, path: str, body: bytes, n: int) -> dict:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S)
    try:
        request = build_request(f"{host}:{port}", path, body, identity(SSE_RUN, n))
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
                    events.append([now, content_chars(event)])
        return {"status": status, "events": events}
    finally:
        writer.close()


async def run_sse(url: str, requests: int, body: bytes, connections: int = 1) -> dict:
    """`requests` streams, `connections` at a time (each connection's streams one after another)."""
    parts = urlsplit(url)
    path = (parts.path.rstrip("/") or "") + "/v1/chat/completions"
    numbers = iter(range(requests))

    async def worker() -> list[dict]:
        out = []
        for n in numbers:  # one shared iterator: the connections take turns at the next number
            try:
                out.append(await asyncio.wait_for(one_stream(parts.hostname, parts.port, path, body, n), 60))
            except (TimeoutError, OSError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
                out.append({"status": 0, "error": type(exc).__name__, "events": []})
        return out

    done = await asyncio.gather(*(worker() for _ in range(max(1, min(connections, requests)))))
    return {"requests": [r for results in done for r in results]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["load", "sse"])
    parser.add_argument("url")
    parser.add_argument("--body", help="sse: the streaming request to post")
    parser.add_argument("--bodies", help="load: the bodies file (one JSON body per line)")
    parser.add_argument("--connections", type=int, default=None,
                        help="load: 16 by default; sse: streams at a time, 1 by default")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--run", type=int, default=0, help="load: this run's number (0-65535): its texts and "
                                                             "identities are its own")
    parser.add_argument("--identities", type=int, default=0, help="load: cycle over N identities (0: one each)")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args(argv)
    if (args.mode == "load") != (args.bodies is not None) or (args.mode == "sse") != (args.body is not None):
        parser.error("load takes --bodies FILE, sse takes --body FILE")
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.mode == "load":
        try:
            body_for = bodies_from(args.bodies, args.run)
        except (OSError, ValueError) as exc:
            parser.error(f"--bodies: {exc}")
        result = runner(run_load(args.url, args.connections or 16, args.duration, body_for, args.run,
                                 args.identities))
        print("WRKJSON " + json.dumps(result), flush=True)
    else:
        result = runner(run_sse(args.url, args.requests, Path(args.body).read_bytes(), args.connections or 1))
        print("SSEJSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
