"""A small pooled HTTP/1.1 client for the one upstream the firewall talks to.

Why not aiohttp's client: a general client resolves URLs, merges cookies, builds header
multidicts, arms timers and wraps each exchange in several objects; on a 1.5 KB chat request that
cost more CPU than the whole inspection. The firewall only ever calls one origin with requests it
has already validated, so it needs much less: keep-alive connections to that origin, a request
written in one `write`, and a response parsed straight from the socket buffer, with
Content-Length, chunked and read-until-close framing, gzip/deflate decoding, and flow control so
a fast upstream cannot fill memory behind a slow client.

Failures raise aiohttp's own exception types (`ClientConnectorError`-like `OSError` on connect,
`ClientPayloadError` for a cut or malformed answer), so callers handle both clients alike.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import ssl
import time
import zlib
from collections import deque
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from llm_firewall.proxy.content_coding import CodingError, decode_some, decoder_for
from llm_firewall.proxy.target import UPSTREAM_TARGET

MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE = 1024
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")  # 1*HEXDIG; int(x, 16) alone accepts "0x", "_", signs
PAUSE_ABOVE = 1 << 20  # buffered answer bytes before the socket stops being read
IDLE_KEEP_S = 15.0  # below common server keep-alive timeouts, so a pooled socket is rarely stale
MAX_IDLE = 256
SWEEP_S = 0.1  # deadline granularity: timeouts fire up to this much late
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})
_NO_BODY_STATUS = frozenset({204, 304})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Header names are RFC 9110 tokens (§5.1); values hold no CR, LF, NUL or other control but HTAB
# (§5.5), so no line can start another header or request. Checked on the written block at once:
# no control but HTAB and the CR LF pairs that end lines, exactly one pair per header.
_NOT_TOKEN = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@functools.lru_cache(maxsize=256)
def _target_ok(target: str) -> bool:
    """Whether a request target has the one form `proxy.target.resolve` produces (few distinct)."""
    return UPSTREAM_TARGET.fullmatch(target) is not None


class UnsafeRequestError(ValueError):
    """A request part that would not be written as exactly one well-formed HTTP/1.1 request."""


class Http1Response:
    """One answer: status and headers at once, the body as it arrives (`read`, `content.readany`)."""

    __slots__ = ("status", "reason", "headers", "content_type", "_conn", "_loop", "_chunks", "_buffered",
                 "_done", "_error", "_waiter", "_keep_alive", "_released", "_decoder", "_room")

    def __init__(self, conn: _Connection, status: int, reason: str, headers: CIMultiDictProxy[str],
                 keep_alive: bool) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        ctype = headers.get("Content-Type", "")
        self.content_type = ctype.split(";", 1)[0].strip().lower() or "application/octet-stream"
        self._conn: _Connection | None = conn
        self._loop = conn.loop
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._keep_alive = keep_alive
        self._released = False
        self._room = conn.pool.max_answer_bytes  # decoded bytes this answer may still bring
        try:
            self._decoder = decoder_for(headers.get("Content-Encoding", "identity"))
        except CodingError:
            raise aiohttp.ClientPayloadError("the upstream used a content-encoding we did not offer") from None

    @property
    def content(self) -> Http1Response:
        """aiohttp's `response.content` shape: `await up.content.readany()`."""
        return self

    # -- fed by the connection ----------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = decode_some(self._decoder, data, self._room)
            except zlib.error as exc:
                self._fail(aiohttp.ClientPayloadError(f"the upstream answer could not be decoded: {exc}"))
                return
            if not data:
                return
        self._room -= len(data)
        if self._room < 0:  # a decompression bomb, or just more than any answer may be
            self._fail(aiohttp.ClientPayloadError("the upstream answer is larger than the firewall accepts"))
            if self._conn is not None:
                self._conn.close()
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > PAUSE_ABOVE and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        if self._conn is not None:
            self._conn.deadline = 0.0
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
                self._buffered += len(tail)
        self._done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self._done and self._error is None:
            self._error = exc
            self._keep_alive = False
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- read by the caller -------------------------------------------------------------------
    async def readany(self) -> bytes:
        """Whatever has arrived (at least one byte), or b"" at the end of the body."""
        while True:
            if self._chunks:
                chunks = self._chunks
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                conn = self._conn
                if conn is not None and conn.paused:
                    conn.resume()
                return data
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            self._waiter = self._loop.create_future()
            await self._waiter

    async def read(self) -> bytes:
        """The whole body."""
        parts: list[bytes] = []
        while True:
            data = await self.readany()
            if not data:
                return b"".join(parts) if len(parts) != 1 else parts[0]
            parts.append(data)

    def release(self) -> None:
        """Give the connection back when the body was read whole, else close it."""
        if self._released:
            return
        self._released = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._error is None and self._keep_alive:
            conn.back_to_pool()
        else:
            conn.close()

    def close(self) -> None:
        """Drop the connection (the client went away or the answer is refused mid-way)."""
        self._released = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _Connection(asyncio.Protocol):
    """One keep-alive socket to the upstream, parsing one answer at a time."""

    def __init__(self, pool: Http1Pool) -> None:
        self.pool = pool
        # Kept: on Python 3.11 every `asyncio.get_running_loop()` costs a getpid() system call,
        # and a stream would pay one per event.
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.head_from = 0  # where the search for the end of the head resumes (bytes before hold none)
        self.closed = False
        self.idle_since = 0.0
        self.head_waiter: asyncio.Future[Http1Response] | None = None
        self.no_body = False  # the request was HEAD
        self.response: Http1Response | None = None
        self.got_bytes = False
        # body framing of the current answer
        self.remaining = -1  # bytes left of a Content-Length body; -1 when not length-framed
        self.chunked = False
        self.chunk_left = 0
        self.chunk_state = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailers
        self.until_close = False
        self.paused = False
        self.deadline = 0.0  # loop time by which the next byte must arrive; 0 when idle

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.deadline:
            self.deadline = self.pool.loop_time() + self.pool.idle_timeout
        if self.response is None:
            if self.head_waiter is None:  # bytes nobody asked for: this socket is unusable
                self.close()
                return
            self.buf += data
            self._parse_head()
            return
        self._body(data)

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost does the bookkeeping

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        waiter = self.head_waiter
        if waiter is not None and not waiter.done():
            err = aiohttp.ServerDisconnectedError() if not self.got_bytes else aiohttp.ClientPayloadError(
                "the upstream closed the connection mid-answer")
            waiter.set_exception(err)
        resp = self.response
        if resp is not None and not resp._done:
            if self.until_close and exc is None:
                resp._finish()
            else:
                resp._fail(aiohttp.ClientPayloadError("the upstream connection was cut mid-answer"))

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self.pool.forget(self)

    def back_to_pool(self) -> None:
        self.deadline = 0.0
        self.response = None
        self.head_waiter = None
        self.resume()
        self.pool.put_back(self)

    def send(self, payload: bytes, no_body: bool) -> asyncio.Future[Http1Response]:
        assert self.transport is not None
        self.no_body = no_body
        self.got_bytes = False
        self.response = None
        self.buf.clear()
        self.head_from = 0
        loop = self.loop
        self.head_waiter = waiter = loop.create_future()
        self.deadline = loop.time() + self.pool.first_byte_timeout
        self.pool.watch(self)
        self.transport.write(payload)
        return waiter

    def expire(self) -> None:
        """The upstream went quiet for longer than allowed: fail whoever waits, drop the socket."""
        waiter = self.head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())
        if self.response is not None:
            self.response._fail(TimeoutError())
        self.close()

    # -- parsing ---------------------------------------------------------------------------------
    def _fail_head(self, message: str) -> None:
        waiter = self.head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(aiohttp.ClientPayloadError(message))
        self.close()

    def _parse_head(self) -> None:
        while True:
            end = self.buf.find(b"\r\n\r\n", self.head_from)
            if end < 0:
                if len(self.buf) > MAX_HEAD_BYTES:
                    self._fail_head("the upstream sent a response head that is too large")
                # a head dribbled in small reads is searched once, not again on every read
                self.head_from = max(0, len(self.buf) - 3)
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            self.head_from = 0
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            try:
                if not parts[0].startswith(b"HTTP/1."):
                    raise ValueError
                status = int(parts[1])
            except (ValueError, IndexError):
                self._fail_head("the upstream sent something that is not an HTTP/1.x response")
                return
            if 100 <= status < 200 and status != 101:
                continue  # informational (100 Continue, 103 Early Hints): the real answer follows
            pairs = []
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
                    self._fail_head("the upstream sent a malformed header line")
                    return
                pairs.append((name.decode("latin-1"), value.strip().decode("utf-8", "surrogateescape")))
            self._start_body(status, parts[2].decode("latin-1") if len(parts) > 2 else "", pairs, parts[0])
            return

    def _start_body(self, status: int, reason: str, pairs: list[tuple[str, str]], version: bytes) -> None:
        headers = CIMultiDictProxy(CIMultiDict(pairs))
        connection = headers.get("Connection", "").lower()
        keep_alive = "close" not in connection and (version == b"HTTP/1.1" or "keep-alive" in connection)
        te = headers.get("Transfer-Encoding", "").lower()
        self.chunked = False
        self.until_close = False
        self.remaining = -1
        no_body = self.no_body or status in _NO_BODY_STATUS
        if not no_body:
            if te:
                if te.rsplit(",", 1)[-1].strip() != "chunked" or "Content-Length" in headers:
                    self._fail_head("the upstream answer has an ambiguous transfer-encoding")
                    return
                self.chunked, self.chunk_state, self.chunk_left = True, 0, 0
            elif "Content-Length" in headers:
                lengths = {v.strip() for v in headers.getall("Content-Length")}
                length = lengths.pop() if len(lengths) == 1 else ""
                if not length.isdigit():
                    self._fail_head("the upstream answer has an invalid Content-Length")
                    return
                self.remaining = int(length)
            else:
                self.until_close = True
                keep_alive = False
        try:
            resp = Http1Response(self, status, reason, headers, keep_alive)
        except aiohttp.ClientPayloadError as exc:
            self._fail_head(str(exc))
            return
        self.response = resp
        if no_body or self.remaining == 0:
            self.deadline = 0.0
        waiter, self.head_waiter = self.head_waiter, None
        rest = bytes(self.buf)
        self.buf.clear()
        if no_body or self.remaining == 0:
            resp._finish()
        elif rest:
            self._body(rest)
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)

    def _body(self, data: bytes) -> None:
        resp = self.response
        assert resp is not None
        if resp._done:
            if data:  # bytes after a complete answer: the socket cannot be trusted any more
                resp._keep_alive = False
            return
        if self.remaining >= 0:
            if len(data) >= self.remaining:
                extra = len(data) > self.remaining
                resp._feed(data[:self.remaining] if extra else data)
                self.remaining = 0
                if extra:
                    resp._keep_alive = False
                resp._finish()
            else:
                self.remaining -= len(data)
                resp._feed(data)
        elif self.chunked:
            self._chunked(data)
        else:
            resp._feed(data)

    def _chunked(self, data: bytes) -> None:
        resp = self.response
        assert resp is not None
        buf = self.buf
        if not buf and self.chunk_state == 0:
            # A stream's usual read: exactly one whole chunk. Feed it without copying it through
            # the buffer (one SSE event per chunk makes this the per-event path).
            end = data.find(b"\r\n", 0, 18)
            if end > 0 and _CHUNK_SIZE.fullmatch(data, 0, end):
                size = int(data[:end], 16)
                stop = end + 2 + size
                if size and len(data) == stop + 2 and data.endswith(b"\r\n"):
                    resp._feed(data[end + 2:stop])
                    return
        buf += data
        while buf:
            state = self.chunk_state
            if state == 1:
                take = min(self.chunk_left, len(buf))
                resp._feed(bytes(buf[:take]))
                del buf[:take]
                self.chunk_left -= take
                if self.chunk_left == 0:
                    self.chunk_state = 2
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_CHUNK_LINE:
                    self._cut("the upstream sent a chunk header that is too long")
                return
            line = bytes(buf[:end])
            del buf[:end + 2]
            if state == 2:
                if line:
                    self._cut("the upstream sent malformed chunked framing")
                    return
                self.chunk_state = 0
            elif state == 0:
                size_hex = line.split(b";", 1)[0].strip()
                if not _CHUNK_SIZE.fullmatch(size_hex):
                    self._cut("the upstream sent an invalid chunk size")
                    return
                self.chunk_left = int(size_hex, 16)
                self.chunk_state = 1 if self.chunk_left else 3
            elif not line:  # state 3: the empty line that ends the trailers
                if buf:
                    resp._keep_alive = False
                    buf.clear()
                resp._finish()
                return

    def _cut(self, message: str) -> None:
        if self.response is not None:
            self.response._fail(aiohttp.ClientPayloadError(message))
        self.close()


class _Proxy:
    """An `HTTPS_PROXY`-style URL: where the proxy listens, and its credentials if it wants any."""

    def __init__(self, host: str, port: int, tls: bool, authorization: str | None) -> None:
        self.host, self.port, self.authorization = host, port, authorization
        self.ssl = ssl.create_default_context() if tls else None

    @classmethod
    def parse(cls, url: str) -> _Proxy:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"proxy URL must be http:// or https:// with a host, got {parts.scheme}://…")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode()
        return cls(parts.hostname, parts.port or (443 if parts.scheme == "https" else 8080), parts.scheme == "https",
                   authorization)


class _TunnelOpener(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT; the connection then belongs to a `_Connection`."""

    def __init__(self) -> None:
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._buf = b""
        self.extra = b""

    def data_received(self, data: bytes) -> None:
        if self.status.done():
            self.extra += data
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD_BYTES:
                self.status.set_exception(ConnectionError("the proxy's answer to CONNECT is too long"))
            return
        line = self._buf.split(b"\r\n", 1)[0].split()
        status = int(line[1]) if len(line) > 1 and line[0].startswith(b"HTTP/1.") and line[1].isdigit() else 0
        self.extra = self._buf[end + 4:]
        self.status.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.status.done():
            self.status.set_exception(ConnectionError("the proxy closed the connection before opening a tunnel"))


class Http1Pool:
    """Keep-alive connections to one origin (`http://` or `https://`), reused newest first."""

    def __init__(self, base_url: str, *, connect_timeout: float, first_byte_timeout: float = 120.0,
                 idle_timeout: float = 120.0, ssl_context: ssl.SSLContext | None = None,
                 proxy: str | None = None, max_answer_bytes: int = 64 << 20) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL must be http:// or https:// with a host, got {base_url!r}")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        default_port = self.port == (443 if self.secure else 80)
        host_for_header = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host_for_header if default_port else f"{host_for_header}:{self.port}"
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.idle_timeout = idle_timeout
        self._busy: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ssl = (ssl_context or ssl.create_default_context()) if self.secure else None
        self.proxy = _Proxy.parse(proxy) if proxy else None
        self.max_answer_bytes = max_answer_bytes  # decoded, per answer (a stream included)
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._closed = False

    def _encode(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes | None) -> bytes:
        # Without Accept-Encoding a server may pick any coding (RFC 9110 §12.5.3): name the two
        # this client decodes, so an upstream never answers in one it cannot read.
        # Checked here, at the socket, whoever built the parts.
        if method not in _METHODS or not _target_ok(target):
            raise UnsafeRequestError("the request method or target cannot be written upstream as given")
        headers = list(headers)
        names = [name for name, _ in headers]
        block = "".join([f"{name}: {value}\r\n" for name, value in headers])
        if (not all(names) or _NOT_TOKEN.search("".join(names)) or _CONTROL.search(block)
                or not block.count("\r") == block.count("\n") == len(headers)):
            raise UnsafeRequestError("a header name or value cannot be written upstream as given")
        length = f"Content-Length: {len(body)}\r\n" if body is not None else ""
        head = (f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"Accept-Encoding: gzip, deflate\r\n{block}{length}\r\n").encode("utf-8", "surrogateescape")
        return head + body if body else head

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.proxy is not None:
                    conn = await self._through_proxy(loop, self.proxy)
                else:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
                        server_hostname=self.host if self.secure else None)
        except TimeoutError:
            raise ConnectionError(f"connecting to the upstream took longer than {self.connect_timeout:g} s") from None
        self._all.add(conn)
        return conn

    async def _through_proxy(self, loop: asyncio.AbstractEventLoop, proxy: _Proxy) -> _Connection:
        """A tunnel through an HTTP proxy (CONNECT, RFC 9110 §9.3.6), then TLS to the upstream
        inside it when the upstream is https: the proxy relays bytes and never sees the exchange."""
        transport, opener = await loop.create_connection(
            _TunnelOpener, proxy.host, proxy.port, ssl=proxy.ssl, server_hostname=proxy.host if proxy.ssl else None)
        authority = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        transport.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode())
        try:
            status = await opener.status
        except BaseException:
            transport.close()
            raise
        if status != 200:
            transport.close()
            raise ConnectionError(f"the proxy refused to open a tunnel to the upstream (HTTP {status})")
        conn = _Connection(self)
        if self.ssl is not None:
            tls = await loop.start_tls(transport, conn, self.ssl, server_hostname=self.host)
            if tls is None:
                raise ConnectionError("the TLS handshake with the upstream did not complete")
            conn.connection_made(tls)
        else:
            transport.set_protocol(conn)
            conn.connection_made(transport)
        if opener.extra:
            conn.data_received(opener.extra)
        return conn

    def _reuse(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > IDLE_KEEP_S:
                conn.close()
                continue
            return conn
        return None

    async def request(self, method: str, target: str, headers: Iterable[tuple[str, str]],
                      body: bytes | None) -> Http1Response:
        """Send one request and return once the answer's head has arrived.

        Raises OSError when no connection could be made (nothing was sent), aiohttp's
        ServerDisconnectedError / ClientPayloadError when the exchange failed after sending.
        """
        if self._closed:
            raise ConnectionError("the upstream client is closed")
        payload = self._encode(method, target, headers, body)
        no_body = method == "HEAD"
        conn = self._reuse()
        if conn is not None:
            try:
                return await conn.send(payload, no_body)
            except aiohttp.ServerDisconnectedError:
                # A pooled socket the server had already given up on. Replaying is safe for
                # idempotent methods; otherwise the request may have been acted on: report it.
                if method not in _IDEMPOTENT:
                    raise
        conn = await self._connect()
        return await conn.send(payload, no_body)

    # -- deadlines: one sweep a tick for every busy connection instead of a timer per request ---
    def loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def watch(self, conn: _Connection) -> None:
        self._busy.add(conn)
        if self._sweeper is None:
            self._loop = conn.loop
            self._sweeper = self._loop.call_later(SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for conn in [c for c in self._busy if c.deadline and c.deadline <= now]:
            conn.expire()
        self._busy = {c for c in self._busy if c.deadline and not c.closed}
        self._sweeper = self._loop.call_later(SWEEP_S, self._sweep) if self._busy and not self._closed else None

    def put_back(self, conn: _Connection) -> None:
        if self._closed or conn.closed or len(self._idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        self._all.discard(conn)
        self._busy.discard(conn)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        self._all.clear()
