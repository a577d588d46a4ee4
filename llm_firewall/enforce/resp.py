"""A minimal pipelined Redis client for the scripts every request runs.

Why: redis-py spent ~130 µs of CPU per call here (connection checkout, argument encoding,
RESP3 parsing, a `wait_for` per read), two calls a request then, more than the rest of a request.
This client keeps one connection, writes each `EVALSHA` as one buffer and matches replies to
callers in order (RESP answers in order, so concurrent requests share the connection without
waiting for each other). Everything else the store does (writes, listings, the outage probe)
stays on redis-py.

Only what those calls need: RESP2 replies (status, error, integer, bulk, arrays), `AUTH` and
`SELECT` from the URL, TLS for `rediss://`, unix sockets for `unix://` (the private Redis that
`serve --workers N` starts). A caller that gives up (the store's timeout) leaves
its place in the queue, so its late reply is dropped rather than handed to the next caller; a
lost connection fails everyone waiting on it and the next call reconnects. `ScriptClient.for_url`
returns None for URLs with options only redis-py knows: the store then keeps redis-py for these
calls too.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
from collections import deque
from typing import Any, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

_CRLF = b"\r\n"


def encode_command(args: Sequence[str | bytes]) -> bytes:
    """One RESP command (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else arg.encode()
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(_CRLF)
    return b"".join(out)


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def parse_reply(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 reply starting at `pos`: (value, position after it). Errors come back as
    ResponseError values (not raised), bulk strings as str, nil as None."""
    end = buf.find(_CRLF, pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos:pos + 1], bytes(buf[pos + 1:end])
    pos = end + 2
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return ResponseError(line.decode(errors="replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return bytes(buf[pos:pos + size]).decode(errors="surrogateescape"), pos + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = parse_reply(buf, pos)
            items.append(item)
        return items, pos
    raise RedisConnectionError(f"unexpected reply type {kind!r} from redis")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.buf = bytearray()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        try:
            while self.waiting and pos < len(self.buf):
                value, pos = parse_reply(self.buf, pos)
                fut = self.waiting.popleft()
                if not fut.done():
                    fut.set_result(value)
        except _Incomplete:
            pass
        except (ValueError, RedisConnectionError) as exc:
            self.fail(RedisConnectionError(f"unreadable reply from redis: {exc}"))
            return
        del self.buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError("connection to redis lost"))

    def fail(self, exc: Exception) -> None:
        """Close the connection and fail every caller still waiting on it."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)


class ScriptClient:
    """Runs Lua scripts by digest on one pipelined connection; see the module docstring."""

    def __init__(self, host: str, port: int, *, db: int = 0, username: str | None = None,
                 password: str | None = None, tls: bool = False, unix_path: str | None = None) -> None:
        self._host, self._port, self._db = host, port, db
        self._unix_path = unix_path
        self._auth = [username or "default", password] if password is not None else None
        self._tls = tls
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    def for_url(cls, url: str) -> "ScriptClient | None":
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        if parts.scheme == "unix" and parts.path and not set(query) - {"socket_timeout", "db"}:
            db = query.get("db", ["0"])[0]
            return cls("", 0, db=int(db) if db.isdigit() else 0, unix_path=unquote(parts.path),
                       username=unquote(parts.username) if parts.username else None,
                       password=unquote(parts.password) if parts.password is not None else None)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            return None
        if set(query) - {"socket_timeout"}:
            return None  # options only redis-py knows (TLS settings, say): keep it for everything
        path = parts.path.strip("/")
        return cls(parts.hostname, parts.port or 6379, db=int(path) if path.isdigit() else 0,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password is not None else None,
                   tls=parts.scheme == "rediss")

    async def evalsha(self, script: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        """The script's reply, run by its digest (sent in full once if Redis does not know it)."""
        digest = _digest(script)
        reply = await self._call(["EVALSHA", digest, str(len(keys)), *keys, *args])
        if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._call(["EVAL", script, str(len(keys)), *keys, *args])
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def _call(self, command: Sequence[str]) -> Any:
        return await _send(await self._connection(), command)

    async def _connection(self) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is not None and not self._proto.closed:
                return self._proto
            loop = asyncio.get_running_loop()
            if self._unix_path is not None:
                _, proto = await loop.create_unix_connection(_Protocol, self._unix_path)
            else:
                _, proto = await loop.create_connection(
                    _Protocol, self._host, self._port, ssl=ssl.create_default_context() if self._tls else None,
                    server_hostname=self._host if self._tls else None)
            try:
                # AUTH and SELECT go to this connection before anyone else can see it: a caller
                # that found it published early would send its script to the wrong database.
                for setup in ([["AUTH", *self._auth]] if self._auth else []) + (
                        [["SELECT", str(self._db)]] if self._db else []):
                    reply = await _send(proto, setup)
                    if isinstance(reply, ResponseError):
                        raise RedisConnectionError(f"redis refused {setup[0]}: {reply}")
            except BaseException:  # refused, or given up on: never reuse a half-prepared connection
                proto.fail(RedisConnectionError("redis connection setup failed"))
                raise
            self._proto = proto
            return proto

    def close(self) -> None:
        if self._proto is not None:
            self._proto.fail(RedisConnectionError("client closed"))
            self._proto = None


async def _send(proto: _Protocol, command: Sequence[str]) -> Any:
    """Write one command and wait for its reply, matched by its place in the queue."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    proto.waiting.append(fut)
    assert proto.transport is not None
    proto.transport.write(encode_command(command))
    return await fut  # if the caller gives up, its slot stays queued and its reply is dropped


@functools.cache
def _digest(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()
