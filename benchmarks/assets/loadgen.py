#!/usr/bin/env python3
"""Built-in load generator for `llm-firewall bench`, used when `wrk` is not installed.

Runs in its own process (like wrk) so the client never competes with the benchmark's own
bookkeeping. It speaks raw HTTP/1.1 keep-alive over asyncio streams rather than through an
HTTP client library, because a library client would cap the measurable rate far below what the
proxies can serve. Two modes:

  load URL --connections C --duration S --body FILE [--identities N] [--unique [--run-id R]]
      C connections posting FILE for S seconds; prints one `WRKJSON {...}` line with the same
      fields as post.lua. Identities follow post.lua (a new address and session per request,
      5,000 users) or, with --identities N, identity n % N with its own address, user, session.
      --unique does what post_unique.lua does for wrk: the last message's text of request n ends
      in " (ref R-0-n)", so no two requests of the run, nor of runs with different R, carry the
      same text; the body is otherwise FILE byte for byte.
  sse URL --requests N --body FILE [--connections C]
      N streaming requests, C at a time (default 1: one after another); prints one `SSEJSON {...}`
      line with, per request, the client-side arrival time of every SSE event and whether it
      carried content text.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import json
import time
from typing import Any, Callable
from urllib.parse import urlsplit

AUTH = "Bearer sk-bench-7f3a9c2e41d84b6aa0e5f1c2d3b4a596"
TIMEOUT_S = 10.0
REF_PLACEHOLDER = "@@BENCH_REF@@"
REF_SUFFIX = f" (ref {REF_PLACEHOLDER})"


def _with_suffix(doc: Any) -> Any:
    """A copy of a chat request with REF_SUFFIX after the text of its last message."""
    messages = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        raise ValueError("the payload has no 'messages' list to make unique")
    want = copy.deepcopy(doc)
    last = want["messages"][-1]
    content = last.get("content")
    if isinstance(content, str):
        last["content"] = content + REF_SUFFIX
        return want
    parts = []
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    if not parts:
        raise ValueError("the payload's last message has no text content to make unique")
    parts[-1]["text"] += REF_SUFFIX
    return want


def unique_template(body: bytes) -> bytes:
    """`body` with REF_SUFFIX spliced in at the end of the last message's text, byte for byte otherwise.

    Splicing into the original bytes, rather than re-serialising, keeps the unique requests the
    same size and layout as the fixed payload: the two kinds of run differ only in the suffix.
    The spot is found by trying each closing quote from the end and keeping the first whose
    result parses to the intended document, so escapes and key order in the payload do not matter.
    A body that already holds the placeholder is returned as it is.
    """
    if REF_PLACEHOLDER.encode() in body:
        return body
    text = body.decode("utf-8")
    want = _with_suffix(json.loads(text))
    pos = len(text)
    while (pos := text.rfind('"', 0, pos)) >= 0:
        candidate = text[:pos] + REF_SUFFIX + text[pos:]
        try:
            if json.loads(candidate) == want:
                return candidate.encode("utf-8")
        except ValueError:
            continue
    raise ValueError("could not find the end of the last message's text in the payload")


def unique_bodies(template: bytes, run: str) -> Callable[[int], bytes]:
    """Request n's body: the template with its placeholder replaced by `run-0-n`.

    One counter is shared by every connection, so connections never repeat each other; `run`
    keeps separate runs against the same server (and its verdict cache) apart. The 0 stands
    where post_unique.lua puts its wrk thread number.
    """
    head, tail = template.split(REF_PLACEHOLDER.encode(), 1)
    prefix = head + f"{run}-0-".encode()
    return lambda n: prefix + str(n).encode() + tail


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


async def load_worker(host: str, port: int, path: str, body_for: Callable[[int], bytes], counter: itertools.count,
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
            n = next(counter)
            request = build_request(f"{host}:{port}", path, body_for(n), n, identities)
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


async def run_load(url: str, connections: int, duration: float, body_for: Callable[[int], bytes],
                   identities: int) -> dict:
    parts = urlsplit(url)
    path = (parts.path.rstrip("/") or "") + "/v1/chat/completions"
    stats = Stats()
    counter = itertools.count()
    start = time.perf_counter()
    deadline = start + duration
    await asyncio.gather(*(load_worker(parts.hostname, parts.port, path, body_for, counter, identities, deadline, stats)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - start
    lat = sorted(stats.latencies)
    e = stats.errors
    return {"requests": len(lat), "duration_us": int(elapsed * 1e6), "err_connect": e["connect"],
            "err_read": e["read"], "err_write": e["write"], "err_status": e["status"],
            "err_timeout": e["timeout"], "p50_us": int(percentile(lat, 50) * 1e6),
            "p99_us": int(percentile(lat, 99) * 1e6)}


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
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
                out.append({"status": 0, "error": type(exc).__name__, "events": []})
        return out

    done = await asyncio.gather(*(worker() for _ in range(max(1, min(connections, requests)))))
    return {"requests": [r for results in done for r in results]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["load", "sse"])
    parser.add_argument("url")
    parser.add_argument("--body", required=True)
    parser.add_argument("--connections", type=int, default=None,
                        help="load: 16 by default; sse: streams at a time, 1 by default")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--identities", type=int, default=0)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--unique", action="store_true", help="load mode: a distinct suffix in every request's text")
    parser.add_argument("--run-id", default=None, help="with --unique: tells this run's texts from other runs' "
                                                       "(default: derived from the clock)")
    args = parser.parse_args(argv)
    body = open(args.body, "rb").read()
    if args.unique:
        try:
            body_for = unique_bodies(unique_template(body), args.run_id or str(time.time_ns() // 1000 % 10**9))
        except ValueError as exc:
            parser.error(f"--unique: {args.body}: {exc}")
    else:
        body_for = lambda n: body  # noqa: E731
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.mode == "load":
        result = runner(run_load(args.url, args.connections or 16, args.duration, body_for, args.identities))
        print("WRKJSON " + json.dumps(result), flush=True)
    else:
        result = runner(run_sse(args.url, args.requests, body, args.connections or 1))
        print("SSEJSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
