"""SSE framing: however the upstream's bytes are cut into reads, the same events come out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_firewall.proxy.sse import EventSplitter

STREAM = (b'data: {"a": 1}\n\n'
          b'event: message\r\ndata: {"b": 2}\r\n\r\n'
          b': keep-alive\n\n'
          b'data: line one\ndata: line two\n\n'
          b'data: {"c": 3}\r\r'
          b'data: [DONE]\n\n')


def events(reads: list[bytes], max_event_bytes: int = 8 * 1024 * 1024) -> list[tuple[bytes, bytes | None]]:
    splitter = EventSplitter(max_event_bytes)
    out = [e for r in reads for e in splitter.feed(r)] + list(splitter.flush())
    return [(e.raw, e.data) for e in out]


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), unique=True, max_size=40))
def test_any_cut_into_reads_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    got = events([STREAM[a:b] for a, b in zip(bounds, bounds[1:])])
    assert got == events([STREAM])
    assert [data for _, data in got] == [b'{"a": 1}', b'{"b": 2}', None, b"line one\nline two", b'{"c": 3}',
                                          b"[DONE]"]


@pytest.mark.parametrize("raw, data", [
    (b'data: {"a": 1}\n\n', b'{"a": 1}'),  # the one-line shape a paced stream sends, read by read
    (b"data: x\rdata: y\n\n", b"x\ny"),  # a lone CR ends a line too
    (b"data:x\n\n", b"x"),
    (b"data: a\ndata: b\n\n", b"a\nb"),
    (b"event: e\ndata: x\n\n", b"x"),
    (b"data: [DONE]\n\n", b"[DONE]"),
    (b": keep-alive\n\n", None),
    (b"data: \n\n", b""),
])
def test_a_read_of_one_whole_event_parses_as_inside_a_longer_read(raw: bytes, data: bytes | None) -> None:
    alone = events([raw])
    assert alone == events([b"data: {}\n\n" + raw])[1:]
    assert len(alone) == 1 and alone[0][0] == raw
    assert alone[0][1] == data


@pytest.mark.parametrize("raw, relayed", [
    (b"data: x\n: sk-proj-hidden\n\n", b"data: x\n\n"),  # a comment in an event with data
    (b"x-debug: sk-proj-hidden\ndata: x\n\n", b"data: x\n\n"),  # a field no client reads
    (b"retry: soon sk-proj\ndata: x\n\n", b"data: x\n\n"),
    (b"event: e\nid: 7\nretry: 10\ndata: x\n\n", b"event: e\nid: 7\nretry: 10\ndata: x\n\n"),
])
def test_an_event_with_data_keeps_only_the_fields_a_client_reads(raw: bytes, relayed: bytes) -> None:
    assert events([raw]) == [(relayed, b"x")]


def test_event_names_and_ids_are_given_to_be_read_like_labels() -> None:
    splitter = EventSplitter()
    (event,) = splitter.feed(b"event: response.done\nid: sk-proj-in-an-id\ndata: {}\n\n")
    assert event.meta == "response.done\nsk-proj-in-an-id" and event.event == "response.done"
    (plain,) = splitter.feed(b"data: {}\n\n")
    assert plain.meta is None


@pytest.mark.parametrize("read", [1, 3, 16 * 1024])
def test_a_large_event_in_many_reads_arrives_whole(read: int) -> None:
    body = b"data: " + b"A" * (256 * 1024 if read > 1 else 4096) + b"\n\n"
    stream = body + b"data: [DONE]\n\n"
    got = events([stream[i:i + read] for i in range(0, len(stream), read)])
    assert got == [(body, body[6:-2]), (b"data: [DONE]\n\n", b"[DONE]")]


def test_an_event_over_the_limit_is_refused_not_buffered() -> None:
    splitter = EventSplitter(max_event_bytes=1000)
    splitter.feed(b"data: " + b"A" * 600)
    with pytest.raises(ValueError, match="larger than the firewall accepts"):
        splitter.feed(b"A" * 600)


def test_a_cut_stream_flushes_its_last_event() -> None:
    assert events([b'data: {"a": 1}\n\ndata: {"b"', b': 2}']) == [
        (b'data: {"a": 1}\n\n', b'{"a": 1}'), (b'data: {"b": 2}\n\n', b'{"b": 2}')]
