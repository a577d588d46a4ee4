"""Strict body parsing: a repeated key anywhere in a body is refused, however it is written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_firewall.proxy.openai_wire import WireError, parse_json_body

# Texts rich in what a key-end count could trip over: quotes, colons, backslashes, whitespace.
TRICKY = st.text(alphabet=st.sampled_from(['"', ":", "\\", " ", "\n", "a", "b", "é", "{", "}"]), max_size=8)
KEYS = st.one_of(st.sampled_from(["a", "b", "role", "content"]), TRICKY)
SPACE = st.sampled_from(["", " ", "\n  ", "\t", "\r\n"])


class Obj(list):
    """An object as written: (key, value) pairs, repeats allowed."""


def trees() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), TRICKY)
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(Obj)), max_leaves=20)


def write(tree: Any, space: st.DataObject) -> str:
    gap = lambda: space.draw(SPACE)  # noqa: E731 - one draw per place whitespace may go
    if isinstance(tree, Obj):
        items = [f"{gap()}{json.dumps(k)}{gap()}:{gap()}{write(v, space)}{gap()}" for k, v in tree]
        return "{" + ",".join(items) + "}"
    if isinstance(tree, list):
        return "[" + ",".join(f"{gap()}{write(v, space)}{gap()}" for v in tree) + "]"
    return json.dumps(tree)


def has_repeat(tree: Any) -> bool:
    if isinstance(tree, Obj):
        keys = [k for k, _ in tree]
        return len(keys) != len(set(keys)) or any(has_repeat(v) for _, v in tree)
    if isinstance(tree, list):
        return any(has_repeat(v) for v in tree)
    return False


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(KEYS, trees()), max_size=5).map(Obj), st.data())
def test_a_body_parses_as_json_unless_a_key_repeats_somewhere(tree: Obj, space: st.DataObject) -> None:
    raw = write(tree, space).encode()
    if has_repeat(tree):
        with pytest.raises(WireError) as info:
            parse_json_body(raw, max_depth=64)
        assert info.value.code == "invalid_json" and "duplicate key" in info.value.message
    else:
        assert parse_json_body(raw, max_depth=64) == json.loads(raw)


@pytest.mark.parametrize("raw", [
    b'{"model": "m", "messages": [{"role": "user", "content": "hi", "content": "bye"}]}',
    b'{"model": "m", "messages": [], "tools": [{"type": "function", "function": {"name": "f", "name": "g"}}]}',
    b'{"model" : "m", "model":"n", "messages": []}',  # whitespace before one colon only
    b'{"model": "\\": ", "model": "n", "messages": []}',  # a value that looks like a key end
])
def test_repeated_keys_are_refused_at_any_depth(raw: bytes) -> None:
    with pytest.raises(WireError, match="duplicate key"):
        parse_json_body(raw, max_depth=64)


def test_strings_that_look_like_key_ends_are_read_as_written() -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": ": \\":x\\" \\":"}]}'
    assert parse_json_body(raw, max_depth=64)["messages"][0]["content"] == ': ":x" ":'
