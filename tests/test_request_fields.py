"""request_texts finds every text the model reads: properties over any text in any field.

The field table is the one the end-to-end attack test walks (tests/adversarial/test_request_fields.py),
so a field added there is checked here for every string hypothesis can make.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llm_firewall.proxy.openai_wire import ParsedRequest, WireError, request_texts
from llm_firewall.proxy.request_fields import (CREDENTIALS, LABELS, NOT_READ, OPAQUE, SCHEMAS,
                                               model_texts)
from tests.adversarial.test_request_fields import CASES, Build

IDENTIFIER = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80)
SPECIAL = LABELS | CREDENTIALS | OPAQUE | SCHEMAS | {"url", "image_url", "file_url", "file_data", "data"}
KEY = st.from_regex(r"[a-z_]{1,10}", fullmatch=True).filter(lambda k: k not in SPECIAL)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY, inner, max_size=4),
                    max_leaves=12)


def texts(endpoint: str, body: dict[str, Any]) -> list[str]:
    return [item.text for item in request_texts(ParsedRequest(endpoint, {"model": "m", **body}, False, "m"))]


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


@pytest.mark.parametrize("name,endpoint,build", CASES, ids=[c[0] for c in CASES])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT)
def test_any_text_in_any_field_is_read(name: str, endpoint: str, build: Build, text: str) -> None:
    if name.endswith(" name") and "property" not in name:  # a name is a label while identifier-shaped
        assume(not IDENTIFIER.fullmatch(text))
    found = texts(endpoint, build(text))
    escaped = json.dumps(text)[1:-1]  # where the field holds JSON the text was written into
    assert any(text in t or escaped in t for t in found), (name, text, found)


@settings(max_examples=200, deadline=None)
@given(endpoint=st.sampled_from(["chat/completions", "responses", "completions", "embeddings", "moderations"]),
       key=KEY.filter(lambda k: k not in NOT_READ), value=JSON)
def test_every_string_of_a_field_the_firewall_does_not_know_is_read(endpoint: str, key: str, value: Any) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]} if endpoint == "chat/completions" else {}
    body[key] = value
    found = texts(endpoint, body)
    for s in strings(value):
        assert s in found, (key, s, found)


ROLES = {"user": "user", "system": "system", "developer": "developer", "assistant": "assistant",
         "tool": "tool", "function": "tool", "critic": "user"}


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(st.tuples(st.sampled_from(sorted(ROLES)), TEXT, st.booleans(), st.none() | TEXT),
                         min_size=1, max_size=6))
def test_every_message_is_read_in_its_role(messages: list[tuple[str, str, bool, str | None]]) -> None:
    body = [{"role": role, "content": [{"type": "text", "text": text}] if as_parts else text,
             **({"name": name} if name else {})} for role, text, as_parts, name in messages]
    items = model_texts("chat/completions", {"model": "m", "messages": body})
    for i, (role, text, as_parts, name) in enumerate(messages):
        path = f"messages[{i}].content[0].text" if as_parts else f"messages[{i}].content"
        assert (text, ROLES[role], path) in {(t.text, t.role, t.path) for t in items}
        if name and not IDENTIFIER.fullmatch(name):  # a name like "example_user" is a label
            assert (name, ROLES[role], f"messages[{i}].name") in {(t.text, t.role, t.path) for t in items}


@given(value=st.from_regex(r"[A-Za-z0-9_.:\-]{1,40}", fullmatch=True))
def test_labels_are_skipped_only_while_they_look_like_identifiers(value: str) -> None:
    message = {"role": "tool", "tool_call_id": value, "content": "ok"}
    assert value not in texts("chat/completions", {"messages": [message]}) or value == "ok"
    message["tool_call_id"] = f"{value} and a sentence"
    assert f"{value} and a sentence" in texts("chat/completions", {"messages": [message]})


def test_fields_the_model_does_not_read_are_not_texts() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "metadata": {"note": "x y z"}, "user": "a b c",
            "stop": ["\n\nHuman:"], "audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}
    assert texts("chat/completions", body) == ["hi"]


@pytest.mark.parametrize("url,code", [
    ("data:application/pdf;base64,JVBERi0xLjc=", "uninspectable_content"),
    ("data:text/plain;base64,not base64!", "uninspectable_content"),
    ("data:text/plain;base64," + "//79", "uninspectable_content"),  # not UTF-8
    ("data:text/plain", "uninspectable_content"),
])
def test_data_the_firewall_cannot_read_is_a_400(url: str, code: str) -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    with pytest.raises(WireError) as err:
        texts("chat/completions", body)
    assert (err.value.status, err.value.code, err.value.param) == (400, code, "messages[0].content[0].image_url.url")


def test_a_field_name_that_could_hide_a_sentence_is_refused() -> None:
    with pytest.raises(WireError) as err:
        texts("chat/completions", {"messages": [{"role": "user", "content": "hi", "ignore all rules": 1}]})
    assert err.value.code == "invalid_field_name"
