"""The hold-back window never releases any part of a secret, however the stream is chunked."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.normalize import base_view
from llm_firewall.detect.rules import default_rules_dir, load_rules
from llm_firewall.proxy.sse import EventSplitter
from llm_firewall.proxy.stream_guard import EARLY_HEAD_CHARS, StreamGuard

ENGINE = Engine(load_rules(default_rules_dir()))
SECRET = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
TEXT = f"Sure. The production key is {SECRET} and you should keep it safe. Anything else?"


def scan(text: str) -> list:
    return ENGINE.scan_text(text, role="response", direction="response")


def redact(text: str) -> tuple[str, list]:
    return ENGINE.redact(text, direction="response")


def sse_for(parts: list[str]) -> bytes:
    def ev(delta: dict, finish: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"
    return (ev({"role": "assistant", "content": ""}) + b"".join(ev({"content": p}) for p in parts)
            + ev({}, "stop") + b"data: [DONE]\n\n")


ANCHOR = ENGINE.stream_anchor("response")
WIDTH = ENGINE.stream_anchor_width("response")


def relay(raw: bytes, *, mode: str = "content_filter", window: int = 128, byte_cut: int = 0,
          anchored: bool = False, trim_at: int = 8192) -> bytes:
    guard = StreamGuard(scan=scan, redact=redact, window=window, mode=mode,
                        anchor=ANCHOR if anchored else None, anchor_width=WIDTH, trim_at=trim_at)
    splitter = EventSplitter()
    out = b""
    pieces = [raw[i:i + byte_cut] for i in range(0, len(raw), byte_cut)] if byte_cut else [raw]
    for piece in pieces:
        for event in splitter.feed(piece):
            out += guard.feed(event)
    return out + guard.finish()


def delivered_text(out: bytes) -> str:
    text = ""
    for block in out.split(b"\n\n"):
        if block.startswith(b"data: {"):
            obj = orjson.loads(block[6:])
            for choice in obj.get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
    return text


def split_into(text: str, n: int) -> list[str]:
    size = max(1, len(text) // n)
    parts = [text[i:i + size] for i in range(0, len(text), size)]
    return parts


@pytest.mark.parametrize("anchored", [False, True])
@pytest.mark.parametrize("n", [2, 3, 10])
@pytest.mark.parametrize("mode", ["content_filter", "error_event"])
def test_secret_split_across_chunks_never_leaks(n: int, mode: str, anchored: bool) -> None:
    out = relay(sse_for(split_into(TEXT, n)), mode=mode, anchored=anchored)
    assert SECRET[:12] not in delivered_text(out)
    assert b"sk-proj" not in out
    assert out.endswith(b"data: [DONE]\n\n")
    if mode == "content_filter":
        assert b'"finish_reason":"content_filter"' in out
    else:
        assert b"content_policy_violation" in out


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(TEXT) - 1), unique=True, max_size=25),
       byte_cut=st.integers(min_value=0, max_value=64), anchored=st.booleans())
def test_any_rechunking_never_releases_any_part_of_the_secret(cuts: list[int], byte_cut: int,
                                                              anchored: bool) -> None:
    bounds = [0, *sorted(cuts), len(TEXT)]
    parts = [TEXT[a:b] for a, b in itertools.pairwise(bounds)]
    out = relay(sse_for(parts), byte_cut=byte_cut, anchored=anchored)
    got = delivered_text(out)
    # Nothing from the start of the secret onwards may be delivered.
    assert got == TEXT[: len(got)]
    assert len(got) <= TEXT.index(SECRET)
    assert b"content_filter" in out


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=200), unique=True, max_size=30))
def test_benign_streams_pass_byte_for_byte(cuts: list[int]) -> None:
    benign = ("Here is how to read a file in Python: open it with a with-statement, iterate over the lines, "
              "and strip each one. Close handles early, and prefer pathlib for paths. That is all.")
    bounds = [0, *sorted(c for c in cuts if c < len(benign)), len(benign)]
    raw = sse_for([benign[a:b] for a, b in itertools.pairwise(bounds) if b > a])
    assert relay(raw) == raw
    # Anchored, a content chunk may leave in two parts (its checked beginning first, the rest
    # later); the text, the single role, every other event and their order stay as the upstream
    # sent them, and the client gets no more events than were sent, plus one for each chunk cut:
    # the first text's, and those whose checked beginning is long.
    out = relay(raw, anchored=True)
    assert delivered_text(out) == benign
    assert out.count(b'"role"') == 1 and out.startswith(raw[: raw.index(b"\n\n") + 2])
    assert out.endswith(raw[raw.rindex(b"data: {"):])
    long_chunks = sum(1 for a, b in itertools.pairwise(bounds) if b - a > EARLY_HEAD_CHARS)
    assert out.count(b"data: ") <= raw.count(b"data: ") + 1 + long_chunks


def test_anchored_guard_releases_the_checked_start_of_a_chunk_at_once() -> None:
    """Time to first token: "Thanks for" leaves "Thanks " before the next delta arrives."""
    guard = StreamGuard(scan=scan, window=128, anchor=ANCHOR, anchor_width=WIDTH)
    events = list(EventSplitter().feed(sse_for(["Thanks for", " reaching out, Jane, ", "bye"])))
    assert delivered_text(guard.feed(events[0])) == ""  # the role event carries no text
    assert delivered_text(guard.feed(events[1])) == "Thanks "
    assert delivered_text(guard.feed(events[2])) == "for reaching out, Jane, "
    rest = b"".join(guard.feed(e) for e in events[3:]) + guard.finish()
    assert delivered_text(rest) == "bye" and rest.endswith(b"data: [DONE]\n\n")


def test_after_the_first_text_short_chunks_leave_as_the_upstream_sent_them() -> None:
    """Once text has left, a chunk whose checked beginning is short waits one event and then
    leaves whole, its bytes unchanged; a long checked beginning is still sent ahead at once."""
    parts = ["Thanks for", " reaching", " out, Jane.", " Your order", " ships", " today", " and",
             " should arrive by Friday, so nothing else is needed from you now and", " then", " bye."]
    raw = sse_for(parts)
    upstream = [e.raw for e in EventSplitter().feed(raw)]  # [0] is the role event
    guard = StreamGuard(scan=scan, window=128, anchor=ANCHOR, anchor_width=WIDTH)
    outs = [guard.feed(e) for e in EventSplitter().feed(raw)]
    outs.append(guard.finish())
    assert delivered_text(b"".join(outs)) == "".join(parts)
    assert delivered_text(outs[1]) == "Thanks "  # time to first token: the first text is cut at once
    assert delivered_text(outs[2]) == "for"  # its rest, on its own: the next head is short
    assert outs[3:8] == upstream[2:7]  # " reaching" .. " today": each one event late, as sent
    # The long chunk's checked beginning leaves at once, with " and" before it.
    assert delivered_text(outs[8]) == " and should arrive by Friday, so nothing else is needed from you now "
    assert delivered_text(outs[9]) == "and" and outs[10] == upstream[9]


def test_chunks_carrying_usage_or_tool_calls_are_never_split() -> None:
    guard = StreamGuard(scan=scan, window=128, anchor=ANCHOR, anchor_width=WIDTH)
    with_usage = (b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
                  b'{"content":"Thanks for"},"finish_reason":null}],"usage":{"total_tokens":3}}\n\n')
    tool = (b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":'
            b'[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\\"a\\": 1, \\"b'
            b'"}}]},"finish_reason":null}]}\n\n')
    for raw in (with_usage, tool):
        (event,) = EventSplitter().feed(raw)
        assert guard.feed(event) == b""  # held whole until the next chunk or the end
        assert guard.finish() == raw
        guard = StreamGuard(scan=scan, window=128, anchor=ANCHOR, anchor_width=WIDTH)


def test_anchored_guard_holds_an_unfinished_secret_prefix() -> None:
    guard = StreamGuard(scan=scan, window=128, anchor=ANCHOR, anchor_width=WIDTH)
    events = list(EventSplitter().feed(sse_for(["Your key is s", "k-proj-" + SECRET[8:], " ok"])))
    released = guard.feed(events[0]) + guard.feed(events[1])
    assert delivered_text(released) == "Your key is "  # "s" may begin "sk-": held
    released += b"".join(guard.feed(e) for e in events[2:]) + guard.finish()
    assert SECRET[:4] not in delivered_text(released) and b"content_filter" in released


@pytest.mark.parametrize("anchored", [False, True])
def test_redact_mode_masks_the_secret_and_keeps_the_rest(anchored: bool) -> None:
    out = relay(sse_for(split_into(TEXT, 7)), mode="redact", anchored=anchored)
    got = delivered_text(out)
    assert SECRET not in got and "sk-proj" not in got
    assert got.startswith("Sure. The production key is ")
    assert got.endswith("and you should keep it safe. Anything else?")
    assert "[REDACTED]" in got
    assert out.endswith(b"data: [DONE]\n\n")


def test_tool_call_arguments_are_inspected_across_deltas() -> None:
    args = ['{"cmd": "sudo r', 'm -rf ', '/ ; echo done"}']

    def ev(delta: dict) -> bytes:
        return b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}) + b"\n\n"
    raw = ev({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "t", "type": "function", "function": {"name": "shell", "arguments": ""}}]})
    raw += b"".join(ev({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}) for a in args)
    raw += b"data: [DONE]\n\n"
    out = relay(raw)
    assert b"rm -rf" not in out and b"content_filter" in out


SECRETS_IN_PROSE = [
    "Your database is at postgres://admin:hunter2pass@db.internal:5432/prod - use it wisely.",
    "Run this to clean up: sudo rm -rf / --no-preserve-root and then reboot the box.",
    "The token: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
    "Base64 of the key: " + __import__("base64").b64encode(SECRET.encode()).decode() + " decode it later.",
]


@pytest.mark.parametrize("text", SECRETS_IN_PROSE)
@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=80), unique=True, max_size=20))
def test_anchored_window_holds_every_kind_of_match(text: str, cuts: list[int]) -> None:
    assert scan(text), "the rules must catch this text whole"
    bounds = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
    out = relay(sse_for([text[a:b] for a, b in itertools.pairwise(bounds) if b > a]), anchored=True)
    got = delivered_text(out)
    assert b"content_filter" in out
    assert not scan(got), f"released text still matches a rule: {got!r}"


def test_anchored_window_releases_plain_prose_early() -> None:
    prose = "Lists keep order and sets make membership tests fast; " * 6
    guard = StreamGuard(scan=scan, window=128, anchor=ANCHOR, anchor_width=WIDTH)
    splitter = EventSplitter()
    released = b""
    for event in splitter.feed(sse_for([prose[i:i + 8] for i in range(0, 120, 8)])[:-len(b"data: [DONE]\n\n")]):
        released += guard.feed(event)
    # Without anchors nothing of the first 120 characters could leave before 128 more arrived.
    assert len(delivered_text(released)) >= 120 - WIDTH - 20


def test_joined_chunks_keep_each_choice_its_own_text() -> None:
    """With n=2 the upstream interleaves one-choice chunks of choices 0 and 1: text held from one
    choice never rides in an event of the other, and each choice's text arrives whole."""
    texts = {0: "Thanks for reaching out about the order, it ships today.",
             1: "Sure thing, the parcel leaves the warehouse this afternoon."}
    raw = b""
    for i in range(0, 60, 6):
        for idx, text in texts.items():
            if text[i:i + 6]:
                raw += b"data: " + orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                                                 "model": "m", "choices": [{"index": idx, "delta": {
                                                     "content": text[i:i + 6]}, "finish_reason": None}]}) + b"\n\n"
    out = relay(raw + b"data: [DONE]\n\n", anchored=True)
    got = {0: "", 1: ""}
    for block in out.split(b"\n\n"):
        if block.startswith(b"data: {"):
            (choice,) = orjson.loads(block[6:])["choices"]
            got[choice["index"]] += choice["delta"]["content"]
    assert got == texts


# Long answers: the guard keeps only the end of a text (about a window's worth beyond what is held),
# so trimming must never lose text still to be released, scanned or masked.
LONG = "The parcel left the warehouse on Monday and the courier expects to deliver it by Friday. " * 50


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(LONG) - 1), unique=True, max_size=80),
       anchored=st.booleans())
def test_long_streams_arrive_whole_while_the_guard_trims(cuts: list[int], anchored: bool) -> None:
    bounds = [0, *sorted(cuts), len(LONG)]
    out = relay(sse_for([LONG[a:b] for a, b in itertools.pairwise(bounds)]), anchored=anchored, trim_at=1)
    assert delivered_text(out) == LONG


@pytest.mark.parametrize("anchored", [False, True])
def test_a_secret_late_in_a_long_answer_is_stopped_or_masked_after_trims(anchored: bool) -> None:
    text = LONG + TEXT
    stopped = relay(sse_for(split_into(text, len(text) // 7)), anchored=anchored, trim_at=1)
    assert b"content_filter" in stopped and SECRET[:12] not in delivered_text(stopped)
    masked = delivered_text(relay(sse_for(split_into(text, len(text) // 7)), mode="redact", anchored=anchored,
                                  trim_at=1))
    assert masked.startswith(LONG + "Sure. The production key is ") and SECRET not in masked
    assert masked.endswith(" and you should keep it safe. Anything else?") and "[REDACTED]" in masked


@pytest.mark.parametrize("anchored", [False, True])
def test_a_long_answer_does_not_stay_in_memory(anchored: bool) -> None:
    """A 1 MiB answer streamed through the guard leaves it holding a few KiB, not the answer."""
    import tracemalloc
    guard = StreamGuard(scan=scan, window=128, anchor=ANCHOR if anchored else None, anchor_width=WIDTH)
    chunk = sse_for(["Lists keep order and sets make membership tests fast. "] * 200)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(100):  # 100 x 200 chunks of 54 characters: ~1 MiB of text
            for event in [e for e in EventSplitter().feed(chunk) if not e.is_done][1:-1]:  # content only
                guard.feed(event)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert guard.assembled_chars > 1_000_000
    assert held < 256 * 1024, held


# Every delta field a client reads is held back like `content`: the same property, per field.
def _chat_field(field: str) -> tuple[Callable[[str], dict], Callable[[dict], str]]:
    """How a text piece rides in a chat chunk's delta field, and how a client reads it back."""
    if field == "tool_calls":
        return (lambda part: {"tool_calls": [{"index": 0, "function": {"arguments": part}}]},
                lambda d: "".join((c.get("function") or {}).get("arguments") or "" for c in d.get("tool_calls") or []))
    return (lambda part: {field: part}), (lambda d: d.get(field) or "")


def _field_stream(field: str, parts: list[str]) -> tuple[bytes, Callable[[bytes], str]]:
    """An SSE stream carrying `parts` in `field`, and a reader of what a client assembles from it."""
    if field.startswith("response."):
        raw = b"".join(b"data: " + orjson.dumps({"type": field, "item_id": "i1", "output_index": 0,
                                                  "content_index": 0, "delta": p}) + b"\n\n" for p in parts)

        def read(out: bytes) -> str:
            return "".join(orjson.loads(b[6:]).get("delta") or "" for b in out.split(b"\n\n")
                           if b.startswith(b"data: {") and orjson.loads(b[6:]).get("type") == field)
        return raw + b"data: [DONE]\n\n", read
    if field == "logprobs":
        events = [{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [
            {"index": 0, "delta": {"content": ""}, "finish_reason": None,
             "logprobs": {"content": [{"token": p, "logprob": -0.1, "bytes": None, "top_logprobs": []}]}}]}
            for p in parts]

        def read(out: bytes) -> str:
            return "".join(e["token"] for b in out.split(b"\n\n") if b.startswith(b"data: {")
                           for c in orjson.loads(b[6:]).get("choices") or []
                           for e in ((c.get("logprobs") or {}).get("content") or []))
        return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n", read
    wrap, unwrap = _chat_field(field)
    raw = b"".join(b"data: " + orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                             "choices": [{"index": 0, "delta": wrap(p), "finish_reason": None}]})
                   + b"\n\n" for p in parts)

    def read(out: bytes) -> str:
        return "".join(unwrap(c.get("delta") or {}) for b in out.split(b"\n\n") if b.startswith(b"data: {")
                       for c in orjson.loads(b[6:]).get("choices") or [])
    return raw + b"data: [DONE]\n\n", read


FIELDS = ["content", "reasoning_content", "reasoning", "refusal", "tool_calls", "logprobs",
          "response.output_text.delta", "response.reasoning_summary_text.delta",
          "response.function_call_arguments.delta"]


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELDS), cuts=st.lists(st.integers(min_value=1, max_value=len(TEXT) - 1), unique=True,
                                                    max_size=25),
       byte_cut=st.integers(min_value=0, max_value=64), anchored=st.booleans(), invisible=st.sampled_from(
           ["", "\u200b", "\u00ad", "\u2060", "\ufe0f"]))
def test_no_chunking_of_any_delta_field_releases_the_secret(field: str, cuts: list[int], byte_cut: int,
                                                             anchored: bool, invisible: str) -> None:
    """For any field, any cut of the text into deltas and of the bytes into reads, and a secret
    spelled with invisible characters between its letters, what the client assembles from the
    field never holds the secret, as written or as the normaliser reads it."""
    secret = invisible.join(SECRET)
    text = TEXT.replace(SECRET, secret)
    bounds = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
    raw, read = _field_stream(field, [text[a:b] for a, b in itertools.pairwise(bounds) if b > a])
    got = read(relay(raw, byte_cut=byte_cut, anchored=anchored))
    assert SECRET[:12] not in base_view(got).text and SECRET[-12:] not in base_view(got).text
    assert len(got) <= text.index(secret), f"part of the secret left in {field}: {got!r}"


def two_texts(parts: list[tuple[str, str]]) -> bytes:
    """A stream whose pieces go to `content` or `reasoning_content`, in the order given."""
    def ev(field: str, text: str) -> bytes:
        return b"data: " + orjson.dumps({
            "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {field: text}, "finish_reason": None}]}) + b"\n\n"
    return b"".join(ev(field, text) for field, text in parts) + b"data: [DONE]\n\n"


def delivered_fields(out: bytes) -> str:
    return "".join(str(v) for block in out.split(b"\n\n") if block.startswith(b"data: {")
                   for c in orjson.loads(block[6:]).get("choices") or [] for v in (c.get("delta") or {}).values())


@pytest.mark.parametrize("anchored", [False, True])
@pytest.mark.parametrize("mode", ["content_filter", "redact"])
def test_a_key_cut_across_two_texts_stops_the_stream_in_every_mode(anchored: bool, mode: str) -> None:
    """Masking cannot reach across two fields: the stream ends, with no part of the key sent."""
    out = relay(two_texts([("reasoning_content", "Thinking: " + SECRET[:15]), ("content", SECRET[15:] + " done"),
                           ("content", " and more text to push the window along. " * 5)]),
                mode=mode, anchored=anchored)
    assert SECRET[8:18] not in delivered_fields(out) and SECRET[20:30] not in delivered_fields(out)
    assert b"content_filter" in out


@pytest.mark.parametrize("anchored", [False, True])
def test_redact_mode_masks_a_key_within_one_of_two_texts_and_goes_on(anchored: bool) -> None:
    parts = [("reasoning_content", "Let me think."), ("content", "Sure. The key is "), ("content", SECRET[:12]),
             ("content", SECRET[12:] + " - keep it safe."), ("content", " Anything else?" * 12)]
    out = relay(two_texts(parts), mode="redact", anchored=anchored)
    text = delivered_fields(out)
    assert SECRET[:12] not in text and SECRET[12:24] not in text
    assert "[REDACTED]" in text and text.endswith("Anything else?") and b"content_filter" not in out


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=1, max_value=len(SECRET) - 1), size=st.integers(min_value=1, max_value=12),
       other=st.sampled_from(["reasoning_content", "refusal"]), anchored=st.booleans(), first=st.booleans())
def test_a_key_cut_anywhere_between_two_texts_never_leaks(cut: int, size: int, other: str, anchored: bool,
                                                         first: bool) -> None:
    """Whatever the cut and the chunking, no part of a key read whole only across two texts leaves."""
    head, tail = f"Note: {SECRET[:cut]}", f"{SECRET[cut:]} and then some closing words of the answer."
    a, b = (("content", head), (other, tail)) if first else ((other, head), ("content", tail))
    parts = [(a[0], a[1][i:i + size]) for i in range(0, len(a[1]), size)]
    parts += [(b[0], b[1][i:i + size]) for i in range(0, len(b[1]), size)]
    out = relay(two_texts(parts), anchored=anchored)
    text = delivered_fields(out)
    assert not [SECRET[i:i + 10] for i in range(len(SECRET) - 9) if SECRET[i:i + 10] in text]
    assert b"content_filter" in out


@pytest.mark.parametrize("anchored", [False, True])
def test_more_choices_or_tool_calls_than_the_cap_stop_the_guard(anchored: bool) -> None:
    def ev(choice: dict) -> bytes:
        return b"data: " + orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                         "choices": [{"finish_reason": None, **choice}]}) + b"\n\n"

    def call(i: int) -> dict:
        return {"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": "{}"}}]}}

    for events in ([ev({"index": i, "delta": {"content": "hi "}}) for i in range(5)], [ev(call(i)) for i in range(5)]):
        guard = StreamGuard(scan=scan, window=128, max_parts=4, anchor=ANCHOR if anchored else None, anchor_width=WIDTH)
        splitter = EventSplitter()
        for event in splitter.feed(b"".join(events[:4])):
            guard.feed(event)  # four are fine
        with pytest.raises(ValueError, match="more than 4 choices, tool calls or output items"):
            for event in splitter.feed(events[4]):
                guard.feed(event)
