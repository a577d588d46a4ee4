"""The upstream client against a raw socket server that answers with hand-written bytes.

Each test scripts what the upstream sends, byte for byte, so framing, keep-alive, decoding and
timeouts are checked against exactly the wire behaviour they must handle.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from llm_firewall.proxy.http1 import Http1Pool

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawUpstream:
    """A TCP server on 127.0.0.1 running `script` per connection; records the request heads."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        self.requests.append(head + body)
        return head + body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def answer(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), b"".join(h + b"\r\n" for h in extra), body)


def keep_answering(upstream_box: list[RawUpstream], reply: Callable[[int], bytes]) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        while True:
            await upstream_box[0].read_request(reader)
            writer.write(reply(n))
            await writer.drain()
            n += 1
    return script


async def pool_for(up: RawUpstream, **kw: float) -> Http1Pool:
    return Http1Pool(up.url, connect_timeout=kw.get("connect", 2.0), first_byte_timeout=kw.get("first_byte", 5.0),
                     idle_timeout=kw.get("idle", 5.0))


async def test_content_length_answers_reuse_one_connection_and_send_a_clean_request():
    box: list[RawUpstream] = []
    async with RawUpstream(keep_answering(box, lambda n: answer(b'{"n": %d}' % n))) as up:
        box.append(up)
        pool = await pool_for(up)
        for n in range(3):
            resp = await pool.request("POST", "/v1/chat/completions", [("Content-Type", "application/json")],
                                      b'{"a":1}')
            assert resp.status == 200 and resp.content_type == "application/json"
            assert await resp.read() == b'{"n": %d}' % n
            resp.release()
        await pool.close()
    assert up.connections == 1
    first = up.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 7\r\n" in first and first.endswith(b"\r\n\r\n{\"a\":1}")
    assert b"\r\nAccept-Encoding: gzip, deflate\r\n" in first  # only codings the client can decode


async def test_chunked_answer_split_at_every_byte_arrives_whole():
    body = b"data: one\n\n" + b"data: " + b"x" * 300 + b"\n\n"
    chunked = (b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in (body[:7], body[7:200], body[200:]))
               + b"0\r\nTrailer: t\r\n\r\n")
    wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        for i in range(len(wire)):  # one byte per write: every boundary is a split somewhere
            writer.write(wire[i:i + 1])
            await writer.drain()
        await reader.read()  # keep the connection open: framing alone must end the body

    async with RawUpstream(script) as up:
        pool = await pool_for(up)
        resp = await pool.request("POST", "/v1/chat/completions", [], b"{}")
        assert resp.content_type == "text/event-stream"
        got = b""
        while chunk := await resp.content.readany():
            got += chunk
        assert got == body
        resp.release()
        await pool.close()


async def test_a_head_dribbled_in_pieces_is_found_wherever_its_end_falls():
    """The end of the head (CRLF CRLF) may straddle two reads in any way."""
    body = b'{"ok": true}'
    wire = answer(body, b"X-Pad: " + b"p" * 40)
    head_len = wire.index(b"\r\n\r\n") + 4
    for split in range(head_len - 4, head_len + 1):  # the separator cut after each of its bytes

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, split: int = split) -> None:
            await up.read_request(reader)
            for piece in (wire[:split - 10], wire[split - 10:split], wire[split:]):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.02)  # separate reads on the client side
            await reader.read()

        async with RawUpstream(script) as up:
            pool = await pool_for(up)
            resp = await asyncio.wait_for(pool.request("POST", "/v1/chat/completions", [], b"{}"), 5)
            assert resp.status == 200 and await asyncio.wait_for(resp.read(), 5) == body
            resp.release()
            await pool.close()


async def test_chunked_answer_one_chunk_per_write_and_bad_chunk_sizes():
    """One whole chunk per read is a stream's usual shape; sizes are 1*HEXDIG and nothing else."""
    events = [b"data: %d\n\n" % i for i in range(5)]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    for size_line, ok in ((None, True), (b"0x9", False), (b"1_0", False), (b"+9", False), (b"9 ", True)):
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         size_line: bytes | None = size_line) -> None:
            await up.read_request(reader)
            writer.write(head)
            for ev in events:
                writer.write(b"%s\r\n%s\r\n" % (size_line or b"%x" % len(ev), ev))
                await writer.drain()
                await asyncio.sleep(0.005)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            await reader.read()

        async with RawUpstream(script) as up:
            pool = await pool_for(up)
            resp = await pool.request("POST", "/v1/chat/completions", [], b"{}")
            if ok:
                assert await resp.read() == b"".join(events)
            else:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
            resp.release()
            await pool.close()


async def test_gzip_and_deflate_answers_are_decoded():
    payloads = [answer(gzip.compress(b'{"z": "gzip"}'), b"Content-Encoding: gzip"),
                answer(zlib.compress(b'{"z": "deflate"}'), b"Content-Encoding: deflate")]
    box: list[RawUpstream] = []
    async with RawUpstream(keep_answering(box, lambda n: payloads[n])) as up:
        box.append(up)
        pool = await pool_for(up)
        for expected in (b'{"z": "gzip"}', b'{"z": "deflate"}'):
            resp = await pool.request("GET", "/v1/models", [], None)
            assert await resp.read() == expected
            resp.release()
        await pool.close()


async def test_unoffered_encoding_and_malformed_heads_are_payload_errors():
    replies = [answer(b"x", b"Content-Encoding: br"), b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
               b"SMTP ready\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for reply in replies:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: bytes = reply) -> None:
            await up.read_request(reader)
            writer.write(reply)
            await writer.drain()
            await reader.read()

        async with RawUpstream(script) as up:
            pool = await pool_for(up)
            with pytest.raises(aiohttp.ClientPayloadError):
                await pool.request("GET", "/v1/models", [], None)
            await pool.close()


async def test_answer_cut_mid_body_raises_and_the_socket_is_not_reused():
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    async with RawUpstream(script) as up:
        pool = await pool_for(up)
        resp = await pool.request("POST", "/v1/chat/completions", [], b"{}")
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
        resp.release()
        assert not pool._idle
        await pool.close()


async def test_silent_upstream_times_out_on_first_byte_and_on_idle_gaps():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        await reader.read()

    async with RawUpstream(silent) as up:
        pool = await pool_for(up, first_byte=0.3)
        with pytest.raises(TimeoutError):
            await pool.request("POST", "/v1/chat/completions", [], b"{}")
        await pool.close()

    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"6\r\ndata: \r\n")
        await writer.drain()
        await reader.read()

    async with RawUpstream(stalls) as up:
        pool = await pool_for(up, idle=0.3)
        resp = await pool.request("POST", "/v1/chat/completions", [], b"{}")
        assert await resp.content.readany() == b"data: "
        with pytest.raises(TimeoutError):
            await resp.content.readany()
        await pool.close()


async def test_a_pooled_socket_closed_by_the_upstream_is_not_used_again():
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        writer.write(answer(b"{}"))  # keep-alive by HTTP/1.1 default, then closes anyway
        await writer.drain()

    async with RawUpstream(one_per_connection) as up:
        pool = await pool_for(up)
        for _ in range(3):
            resp = await pool.request("POST", "/v1/chat/completions", [], b"{}")
            assert await resp.read() == b"{}"
            resp.release()
            await asyncio.sleep(0.05)  # the close reaches the pool before the next request
        await pool.close()
    assert up.connections == 3


async def test_unreachable_upstream_is_an_oserror_before_anything_is_sent():
    async with RawUpstream(lambda r, w: asyncio.sleep(0)) as up:
        url = up.url
    pool = Http1Pool(url, connect_timeout=2.0)
    with pytest.raises(OSError):
        await pool.request("POST", "/v1/chat/completions", [], b"{}")
    await pool.close()


async def test_https_upstream_is_verified_against_the_given_trust(tmp_path):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer(b'{"tls": true}'))
            await writer.drain()
            await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    try:
        trusting = Http1Pool(url, connect_timeout=5.0, ssl_context=ssl.create_default_context(cafile=str(cert)))
        resp = await trusting.request("GET", "/v1/models", [], None)
        assert await resp.read() == b'{"tls": true}'
        resp.release()
        await trusting.close()
        stranger = Http1Pool(url, connect_timeout=5.0)  # the system's trust store does not know this cert
        with pytest.raises(ssl.SSLCertVerificationError):
            await stranger.request("GET", "/v1/models", [], None)
        await stranger.close()
    finally:
        server.close()
        await server.wait_closed()
