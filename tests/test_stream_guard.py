"""The hold-back window never releases any part of a secret, however the stream is chunked."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.rules import default_rules_dir, load_rules
from llm_firewall.proxy.sse import EventSplitter
from llm_firewall.proxy.stream_guard import StreamGuard

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


def relay(raw: bytes, *, mode: str = "content_filter", window: int = 128, byte_cut: int = 0) -> bytes:
    guard = StreamGuard(scan=scan, redact=redact, window=window, mode=mode)
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


@pytest.mark.parametrize("n", [2, 3, 10])
@pytest.mark.parametrize("mode", ["content_filter", "error_event"])
def test_secret_split_across_chunks_never_leaks(n: int, mode: str) -> None:
    out = relay(sse_for(split_into(TEXT, n)), mode=mode)
    assert SECRET[:12] not in delivered_text(out)
    assert b"sk-proj" not in out
    assert out.endswith(b"data: [DONE]\n\n")
    if mode == "content_filter":
        assert b'"finish_reason":"content_filter"' in out
    else:
        assert b"content_policy_violation" in out


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(TEXT) - 1), unique=True, max_size=25),
       byte_cut=st.integers(min_value=0, max_value=64))
def test_any_rechunking_never_releases_any_part_of_the_secret(cuts: list[int], byte_cut: int) -> None:
    bounds = [0, *sorted(cuts), len(TEXT)]
    parts = [TEXT[a:b] for a, b in zip(bounds, bounds[1:])]
    out = relay(sse_for(parts), byte_cut=byte_cut)
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
    raw = sse_for([benign[a:b] for a, b in zip(bounds, bounds[1:]) if b > a])
    assert relay(raw) == raw


def test_redact_mode_masks_the_secret_and_keeps_the_rest() -> None:
    out = relay(sse_for(split_into(TEXT, 7)), mode="redact")
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
