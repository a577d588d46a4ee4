"""The lean script client: replies reach their callers in order however the bytes arrive, a
caller that gives up never receives someone else's reply, and the URL's password and database
are used. Against a real redis-server, except the framing property."""

from __future__ import annotations

import asyncio

import hiredis
import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings, strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from llm_firewall.enforce.resp import ScriptClient, _Protocol, encode_command, parse_reply
from tests.redis.conftest import RedisServer

ECHO = "return ARGV[1]"
MIXED = "return {1, ARGV[1], false, {tonumber(ARGV[2]), 'x'}}"


def resp(value) -> bytes:
    """RESP2 for a reply value (the test's own encoder, independent of the parser)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, str):
        data = value.encode()
        return b"$%d\r\n%s\r\n" % (len(data), data)
    return b"*%d\r\n" % len(value) + b"".join(resp(v) for v in value)


REPLIES = st.recursive(st.none() | st.integers(-10**12, 10**12) | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=4), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(REPLIES, min_size=1, max_size=8), st.lists(st.integers(1, 7), min_size=1, max_size=40))
def test_replies_split_anywhere_reach_their_callers_in_order(replies, cuts) -> None:
    loop = asyncio.new_event_loop()
    try:
        proto = _Protocol()
        futures = [loop.create_future() for _ in replies]
        proto.waiting.extend(futures)
        data, pos, i = b"".join(resp(r) for r in replies), 0, 0
        while pos < len(data):
            step = cuts[i % len(cuts)]
            proto.data_received(data[pos:pos + step])
            pos, i = pos + step, i + 1
        assert [f.result() for f in futures] == replies
        assert not proto.buf and not proto.waiting
    finally:
        loop.close()


def _oracle(data: bytes) -> list:
    """hiredis (the C parser redis-py uses when installed) reading the same bytes."""
    reader = hiredis.Reader(encoding="utf-8", errors="surrogateescape", replyError=ResponseError)
    reader.feed(data)
    out = []
    while (value := reader.gets()) is not False:
        out.append(value)
    return out


ERRORS = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                 min_size=1, max_size=20).map(lambda s: ResponseError("ERR " + s))
WIRE = st.recursive(REPLIES | ERRORS | st.binary(max_size=12), lambda inner: st.lists(inner, max_size=4),
                    max_leaves=12)


def _wire(value) -> bytes:
    if isinstance(value, ResponseError):
        return b"-%s\r\n" % str(value).encode()
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(_wire(v) for v in value)
    return resp(value)


def _same(ours, theirs) -> bool:
    if isinstance(ours, ResponseError):
        return isinstance(theirs, ResponseError) and str(ours) == str(theirs)
    if isinstance(ours, list):
        return isinstance(theirs, list) and len(ours) == len(theirs) and all(map(_same, ours, theirs))
    return ours == theirs


@settings(max_examples=300, deadline=None)
@given(st.lists(WIRE, min_size=1, max_size=6))
def test_replies_are_read_as_hiredis_reads_them(values) -> None:
    data = b"".join(_wire(v) for v in values)
    ours, pos = [], 0
    while pos < len(data):
        value, pos = parse_reply(data, pos)
        ours.append(value)
    theirs = _oracle(data)
    assert len(ours) == len(theirs) and all(map(_same, ours, theirs))


def test_error_replies_and_commands_are_framed() -> None:
    value, end = parse_reply(b"-NOSCRIPT No matching script\r\n:5\r\n", 0)
    assert isinstance(value, ResponseError) and str(value).startswith("NOSCRIPT")
    assert parse_reply(b"-NOSCRIPT No matching script\r\n:5\r\n", end) == (5, 34)
    assert encode_command(["GET", "é"]) == b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xa9\r\n"


async def test_scripts_run_by_digest_concurrently_and_after_a_script_flush(redis_server) -> None:
    client = ScriptClient.for_url(redis_server.url)
    assert await client.evalsha(MIXED, [], ["a", "7"]) == [1, "a", None, [7, "x"]]
    results = await asyncio.gather(*[client.evalsha(ECHO, [], [str(i)]) for i in range(300)])
    assert results == [str(i) for i in range(300)]  # one connection, each caller its own reply
    admin = aioredis.from_url(redis_server.url)
    await admin.script_flush()
    assert await client.evalsha(ECHO, [], ["after flush"]) == "after flush"
    with pytest.raises(ResponseError):
        await client.evalsha("return redis.call('NOSUCHCOMMAND')", [], [])
    assert await client.evalsha(ECHO, [], ["still usable"]) == "still usable"
    await admin.aclose()
    client.close()


async def test_a_call_given_up_on_never_hands_its_reply_to_the_next_caller(fresh_redis) -> None:
    client = ScriptClient.for_url(fresh_redis.url)
    assert await client.evalsha(ECHO, [], ["warm"]) == "warm"
    fresh_redis.pause()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await client.evalsha(ECHO, [], ["abandoned"])
    fresh_redis.resume()
    assert await client.evalsha(ECHO, [], ["next"]) == "next"  # a new connection, not the old reply
    fresh_redis.kill()
    with pytest.raises((RedisConnectionError, OSError)):
        await client.evalsha(ECHO, [], ["gone"])
    client.close()


async def test_password_and_database_come_from_the_url(tmp_path) -> None:
    server = RedisServer(tmp_path, extra_args=("--requirepass", "s3cr%t")).start()
    try:
        base = f"redis://:s3cr%25t@127.0.0.1:{server.port}"
        client = ScriptClient.for_url(base + "/3")
        assert await client.evalsha("redis.call('SET', KEYS[1], 'here'); return 1", ["k"], []) == 1
        admin = aioredis.from_url(base + "/3", decode_responses=True)
        assert await admin.get("k") == "here"
        await admin.aclose()
        client.close()
        wrong = ScriptClient.for_url(f"redis://:nope@127.0.0.1:{server.port}/0")
        with pytest.raises(RedisConnectionError):
            await wrong.evalsha(ECHO, [], ["x"])
        wrong.close()
    finally:
        server.stop()


async def test_calls_racing_the_first_connection_all_run_in_the_urls_database(tmp_path) -> None:
    """AUTH and SELECT finish before any script is sent. The server is paused while the first
    call sets its connection up, so later calls arrive during AUTH; none may land in database 0."""
    server = RedisServer(tmp_path, extra_args=("--requirepass", "pw")).start()
    try:
        base = f"redis://:pw@127.0.0.1:{server.port}"
        client = ScriptClient.for_url(base + "/5")
        mark = "redis.call('SET', KEYS[1], 'here'); return 1"
        loader = aioredis.from_url(base + "/0")
        await loader.script_load(mark)  # known by digest: EVALSHA runs at once, no NOSCRIPT retry
        await loader.aclose()
        server.pause()  # connections are still accepted by the kernel; replies wait
        first = asyncio.ensure_future(client.evalsha(mark, ["k0"], []))
        await asyncio.sleep(0.2)  # the first call has connected and sent AUTH
        later = [asyncio.ensure_future(client.evalsha(mark, [f"k{i}"], [])) for i in range(1, 50)]
        await asyncio.sleep(0.2)
        server.resume()
        assert await asyncio.gather(first, *later) == [1] * 50
        db0, db5 = (aioredis.from_url(f"{base}/{n}", decode_responses=True) for n in (0, 5))
        assert await db0.dbsize() == 0
        assert await db5.dbsize() == 50
        await db0.aclose()
        await db5.aclose()
        client.close()
    finally:
        server.stop()


def test_unix_socket_urls_get_the_script_client_on_that_socket() -> None:
    client = ScriptClient.for_url("unix:///run/redis.sock?db=2")
    assert client is not None and client._unix_path == "/run/redis.sock" and client._db == 2
    assert ScriptClient.for_url("rediss://cache.internal:6380/1")._tls


def test_urls_with_options_only_redis_py_knows_keep_the_regular_client() -> None:
    assert ScriptClient.for_url("rediss://cache.internal:6380/1?ssl_cert_reqs=none") is None
    assert ScriptClient.for_url("redis://127.0.0.1:6379/0?socket_timeout=0.05") is not None
