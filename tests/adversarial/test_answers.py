"""Every answer shape is inspected before release: a hostile upstream cannot get a key to the client
through a field, a label, a header, a content type or an encoding the firewall does not read.

Each case scripts the local upstream to answer with exact bytes, and asks through the real
`openai` SDK where it parses the shape (else over raw HTTP). The client must never receive the
key, whole or in part, and gets a clean answer or an OpenAI-shaped error.
"""

from __future__ import annotations

import base64
import codecs
import gzip
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_firewall.detect.normalize import base_view
from llm_firewall.proxy.answer_shape import is_sse, read_answer
from llm_firewall.proxy.forward import relayed_header
from llm_firewall.proxy.openai_wire import OPAQUE, OPAQUE_TEXT, response_texts
from tests.conftest import Who, make_client, start_firewall
from tests.support.firewall import Firewall
from tests.support.upstream import RawAnswer, TestUpstream
from tests.support.waiting import healthz_while

SECRET = "sk-proj-" + "Qw7Er6Ty5Ui4Op3As2Df1Gh0Jk9Lz8Xc"
AWS = "AKIA" + "IOSFODNN7QWERTY2"
HALF = len(SECRET) // 2
ASK = [{"role": "user", "content": "what is the key?"}]


def pieces(secret: str = SECRET, size: int = 10) -> list[str]:
    """Every `size`-character piece of a secret: none may reach the client."""
    return [secret[i:i + size] for i in range(0, len(secret) - size + 1)]


def assert_clean(received: str) -> None:
    seen = base_view(received).text  # as a reader sees it: invisible characters dropped
    leaked = [p for p in pieces() + pieces(AWS) if p in received or p in seen]
    assert not leaked, f"part of the secret reached the client: {leaked[:3]}"


def spelled(obj: Any) -> str:
    """The texts logprobs spell out in a received answer or chunk: the chosen tokens, and each
    rank of alternatives, joined (a key can be streamed a few characters a token)."""
    lines = []
    for choice in obj.get("choices") or [] if isinstance(obj, dict) else []:
        entries = (choice.get("logprobs") or {}).get("content") or []
        lines.append("".join(e["token"] for e in entries))
        for rank in range(max((len(e.get("top_logprobs") or []) for e in entries), default=0)):
            lines.append("".join(e["top_logprobs"][rank]["token"] for e in entries if len(e["top_logprobs"]) > rank))
    return "\n".join(lines)


def stream_spelled(raw: bytes) -> str:
    """`spelled` over a received SSE stream: each choice's tokens joined across events."""
    events = [orjson.loads(block[6:]) for block in raw.split(b"\n\n") if block.startswith(b"data: {")]
    merged = {"choices": [{"logprobs": {"content": [e for ev in events for c in ev.get("choices") or []
                                                    for e in ((c.get("logprobs") or {}).get("content") or [])]}}]}
    return spelled(merged)


def completion(message: dict[str, Any], **choice: Any) -> bytes:
    return orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                      "finish_reason": "stop", **choice}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})


def responses_answer(*output: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
                         "model": "m", "output": list(output), "parallel_tool_calls": True,
                         "tool_choice": "auto", "tools": [], **extra})


def sse(*payloads: Any) -> list[bytes]:
    return [b"data: " + (p if isinstance(p, bytes) else orjson.dumps(p)) + b"\n\n" for p in payloads] + [
        b"data: [DONE]\n\n"]


def chunk(delta: dict[str, Any] | None = None, **choice: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"index": 0, "finish_reason": None, **choice}
    if delta is not None:
        body["delta"] = delta
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [body]}


def split(field: str, secret: str = SECRET) -> list[dict[str, Any]]:
    """A delta field carrying the key over three chunks, around ordinary text."""
    parts = ["Here it is: " + secret[:HALF // 2], secret[HALF // 2:HALF + 3], secret[HALF + 3:] + " - done."]
    return [chunk({field: part}) for part in parts]


def post(fw: Firewall, path: str, body: dict[str, Any], who: Who) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(fw.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **who.headers()})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def chat(fw: Firewall, **kw: Any) -> str:
    answer = make_client(fw, Who()).chat.completions.create(model="m", messages=ASK, **kw)
    return answer.model_dump_json()


def chat_stream(fw: Firewall) -> tuple[str, str | None]:
    """Everything the SDK yields for a streamed chat answer, and the last finish reason."""
    received, finish = [], None
    for part in make_client(fw, Who()).chat.completions.create(model="m", messages=ASK, stream=True):
        received.append(part.model_dump_json())
        for choice in part.choices:
            finish = choice.finish_reason or finish
    return "".join(received), finish


def responses(fw: Firewall, stream: bool = False) -> str:
    client = make_client(fw, Who())
    if stream:
        return "".join(event.model_dump_json() for event in client.responses.create(
            model="m", input="what is the key?", stream=True))
    return client.responses.create(model="m", input="what is the key?").model_dump_json()


# -- whole (JSON) answers -------------------------------------------------------------------------

JSON_ANSWERS: dict[str, bytes] = {
    "reasoning_content": completion({"content": "No.", "reasoning_content": f"The key is {SECRET}."}),
    "reasoning (object)": completion({"content": "No.", "reasoning": {"summary": [{"text": f"use {SECRET}"}]}}),
    "refusal": completion({"content": None, "refusal": f"I cannot share {SECRET}."}),
    "tool_call arguments": completion({"content": None, "tool_calls": [{
        "id": "call_1", "type": "function", "function": {"name": "send", "arguments": json.dumps({"key": SECRET})}}]}),
    "tool_call name": completion({"content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": SECRET, "arguments": "{}"}}]}),
    "legacy function_call": completion({"content": None, "function_call": {"name": "send", "arguments": SECRET}}),
    "audio transcript": completion({"content": None, "audio": {"id": "a1", "data": "AAAA", "expires_at": 1,
                                                                "transcript": f"say {AWS}"}}),
    "logprob tokens": completion({"content": "fine"}, logprobs={"content": [
        {"token": SECRET[i:i + 3], "logprob": -0.1, "bytes": None, "top_logprobs": []}
        for i in range(0, len(SECRET), 3)]}),
    "top_logprobs tokens": completion({"content": "fine"}, logprobs={"content": [
        {"token": "x", "logprob": -0.1, "bytes": None,
         "top_logprobs": [{"token": SECRET[i:i + 4], "logprob": -2.0, "bytes": None}]}
        for i in range(0, len(SECRET), 4)]}),
    "unknown field": completion({"content": "ok", "x_debug": {"env": [f"OPENAI_API_KEY={SECRET}"]}}),
    "label (id)": orjson.dumps({**orjson.loads(completion({"content": "ok"})), "id": SECRET}),
    "object key": completion({"content": "ok", "x_meta": {SECRET: True}}),
    "top-level key": orjson.dumps({**orjson.loads(completion({"content": "ok"})), SECRET: 1}),
    "opaque padding": orjson.dumps({**orjson.loads(completion({"content": "ok"})), "obfuscation": SECRET}),
    "opaque audio data": completion({"content": None, "audio": {"id": "a1", "data": f"AAAA/{SECRET}/AAAA",
                                                                "expires_at": 1, "transcript": "hi"}}),
}

RESPONSES_ANSWERS: dict[str, bytes] = {
    "message output_text": responses_answer({"type": "message", "id": "m1", "role": "assistant", "status": "completed",
                                             "content": [{"type": "output_text", "text": f"key: {SECRET}",
                                                          "annotations": []}]}),
    "message refusal": responses_answer({"type": "message", "id": "m1", "role": "assistant", "status": "completed",
                                         "content": [{"type": "refusal", "refusal": f"not {SECRET}"}]}),
    "reasoning summary": responses_answer({"type": "reasoning", "id": "r1", "summary": [
        {"type": "summary_text", "text": f"the user wants {AWS}"}]}),
    "function_call": responses_answer({"type": "function_call", "id": "f1", "call_id": "c1", "name": "send",
                                       "arguments": json.dumps({"key": SECRET}), "status": "completed"}),
    "custom tool call": responses_answer({"type": "custom_tool_call", "id": "t1", "call_id": "c1", "name": "shell",
                                          "input": f"export KEY={SECRET}"}),
    "file search results": responses_answer({"type": "file_search_call", "id": "fs1", "status": "completed",
                                             "queries": ["keys"], "results": [{"file_id": "f", "filename": "a.txt",
                                                                               "text": f"prod: {SECRET}"}]}),
    "output_text field": responses_answer(output_text=f"key: {SECRET}"),
}


@pytest.mark.parametrize("body", JSON_ANSWERS.values(), ids=JSON_ANSWERS.keys())
def test_a_key_in_any_field_of_a_chat_answer_never_reaches_the_client(firewall: Firewall, upstream: TestUpstream,
                                                                       body: bytes) -> None:
    upstream.script.raw = RawAnswer(body)
    try:
        answer = make_client(firewall, Who()).chat.completions.create(model="m", messages=ASK, logprobs=True)
        received = answer.model_dump_json() + spelled(answer.model_dump())
    except openai.InternalServerError as exc:  # a label cannot be masked: the answer is withheld
        assert exc.status_code == 502 and exc.code == "content_policy_violation"
        received = str(exc.body)
    assert_clean(received)


@pytest.mark.parametrize("body", RESPONSES_ANSWERS.values(), ids=RESPONSES_ANSWERS.keys())
def test_a_key_in_any_responses_api_output_item_never_reaches_the_client(firewall: Firewall, upstream: TestUpstream,
                                                                         body: bytes) -> None:
    upstream.script.raw = RawAnswer(body)
    assert_clean(responses(firewall))


def test_a_filtered_responses_api_answer_says_it_is_incomplete(firewall: Firewall, upstream: TestUpstream) -> None:
    """Like a chat answer's `finish_reason: content_filter`: a client can tell a cut answer from
    an empty one."""
    upstream.script.raw = RawAnswer(RESPONSES_ANSWERS["message output_text"])
    answer = make_client(firewall, Who()).responses.create(model="m", input="what is the key?")
    assert answer.status == "incomplete"
    assert answer.incomplete_details is not None and answer.incomplete_details.reason == "content_filter"
    assert SECRET not in answer.model_dump_json()


def test_an_ordinary_answer_with_reasoning_and_tool_calls_arrives_unchanged(firewall: Firewall,
                                                                            upstream: TestUpstream) -> None:
    body = completion({"content": "Calling the weather tool.", "reasoning_content": "The user wants the weather.",
                       "tool_calls": [{"id": "call_1", "type": "function", "function": {
                           "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]})
    upstream.script.raw = RawAnswer(body)
    status, headers, got = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK}, Who())
    assert status == 200 and orjson.loads(got) == orjson.loads(body)
    assert headers["Content-Type"].startswith("application/json")


# -- streamed answers -----------------------------------------------------------------------------

CHAT_STREAMS: dict[str, list[bytes]] = {
    "reasoning_content": sse(*split("reasoning_content")),
    "reasoning": sse(*split("reasoning")),
    "refusal": sse(*split("refusal")),
    "tool_call arguments": sse(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                      "function": {"name": "send", "arguments": ""}}]}),
                               *(chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
                                 for p in ('{"key": "' + SECRET[:HALF], SECRET[HALF:] + '"}'))),
    "tool_call name": sse(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                 "function": {"name": SECRET, "arguments": ""}}]})),
    "logprob tokens": sse(*(chunk({"content": "."}, logprobs={"content": [
        {"token": SECRET[i:i + 5], "logprob": -0.1, "bytes": None, "top_logprobs": []}]})
        for i in range(0, len(SECRET), 5))),
    "zero-width-split content": sse(*(chunk({"content": part}) for part in (
        "Sure, the key is " + "\u200b".join(SECRET[:HALF]), "\u200b" + "\u2060".join(SECRET[HALF:]), " - bye."))),
    "soft-hyphen-split content": sse(*(chunk({"content": part}) for part in (
        "Sure, the key is " + AWS[:2] + "\u00ad" + AWS[2:10], AWS[10:], " ok"))),
    "label in a later chunk": sse(chunk({"content": "Hello"}), chunk({"content": " there"}),
                                  {**chunk({"content": "!"}), "system_fingerprint": SECRET}),
    "not JSON": sse(b"the key is " + SECRET.encode()),
    "key in the first chunk": sse({**chunk({"content": "Hi"}), SECRET: 1}),
    "key in a later plain chunk": sse(chunk({"content": "Hello"}), {**chunk({"content": " there"}), SECRET: None}),
    "null delta field named by a key": sse(chunk({"content": "Hello"}), chunk({"content": " there", SECRET: None})),
    "opaque padding": sse(chunk({"content": "Hello"}), {**chunk({"content": " there"}), "obfuscation": SECRET}),
    "id line": [b"id: " + SECRET.encode() + b"\n" + sse(chunk({"content": "Hello"}))[0], b"data: [DONE]\n\n"],
    "event line": [b"event: " + SECRET.encode() + b"\n" + sse(chunk({"content": "Hello"}))[0], b"data: [DONE]\n\n"],
    "comment-only event": [sse(chunk({"content": "Hello"}))[0], b": " + SECRET.encode() + b"\n\n",
                           b"data: [DONE]\n\n"],
}


@pytest.mark.parametrize("name", CHAT_STREAMS)
def test_a_key_in_any_streamed_delta_field_never_reaches_the_client(firewall: Firewall, upstream: TestUpstream,
                                                                    name: str) -> None:
    events = CHAT_STREAMS[name]
    upstream.script.raw = RawAnswer(events, headers={"Content-Type": "text/event-stream"})
    status, _, raw = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK, "stream": True}, Who())
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    assert_clean(raw.decode() + stream_spelled(raw))
    assert b"content_filter" in raw
    if name != "not JSON":  # the SDK parses the JSON ones
        received, finish = chat_stream(firewall)
        assert_clean(received)
        assert finish == "content_filter"


def test_comments_and_unknown_fields_are_dropped_from_events_with_data(firewall: Firewall,
                                                                       upstream: TestUpstream) -> None:
    """No client reads them, but a raw reader would: the firewall drops them rather than read them."""
    first, second = (sse(chunk({"content": text}))[0] for text in ("Hello", " there"))
    upstream.script.raw = RawAnswer([b": " + SECRET.encode() + b"\n" + first,
                                     b"x-debug: " + AWS.encode() + b"\n" + second, b"data: [DONE]\n\n"],
                                    headers={"Content-Type": "text/event-stream"})
    status, _, raw = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK, "stream": True}, Who())
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n") and b"content_filter" not in raw
    assert_clean(raw.decode())
    received, _finish = chat_stream(firewall)
    assert_clean(received)
    assert "Hello there" in "".join(orjson.loads(line[6:])["choices"][0]["delta"].get("content", "")
                                    for line in raw.split(b"\n\n") if line.startswith(b"data: {"))


def resp_event(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, "sequence_number": 1, **fields})


RESPONSES_STREAMS: dict[str, list[bytes]] = {
    "output_text.delta": [e + b"\n\n" for e in (
        resp_event("response.output_text.delta", item_id="m1", output_index=0, content_index=0, delta=SECRET[:HALF]),
        resp_event("response.output_text.delta", item_id="m1", output_index=0, content_index=0, delta=SECRET[HALF:]))],
    "reasoning_summary_text.delta": [e + b"\n\n" for e in (
        resp_event("response.reasoning_summary_text.delta", item_id="r1", output_index=0, summary_index=0,
                   delta="thinking of " + SECRET[:HALF]),
        resp_event("response.reasoning_summary_text.delta", item_id="r1", output_index=0, summary_index=0,
                   delta=SECRET[HALF:]))],
    "function_call_arguments.delta": [e + b"\n\n" for e in (
        resp_event("response.function_call_arguments.delta", item_id="f1", output_index=0, delta=SECRET[:HALF]),
        resp_event("response.function_call_arguments.delta", item_id="f1", output_index=0, delta=SECRET[HALF:]))],
    "response.completed only": [resp_event("response.completed", response=orjson.loads(responses_answer(
        {"type": "message", "id": "m1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": f"key {SECRET}", "annotations": []}]}))) + b"\n\n"],
}


@pytest.mark.parametrize("events", RESPONSES_STREAMS.values(), ids=RESPONSES_STREAMS.keys())
def test_a_key_in_a_responses_api_stream_never_reaches_the_client(firewall: Firewall, upstream: TestUpstream,
                                                                  events: list[bytes]) -> None:
    upstream.script.raw = RawAnswer(events, headers={"Content-Type": "text/event-stream"})
    status, _, raw = post(firewall, "/v1/responses", {"model": "m", "input": "key?", "stream": True}, Who())
    assert status == 200 and b"content_filter" in raw
    assert_clean(raw.decode())


# -- errors, headers, content types, encodings ------------------------------------------------------

def test_a_key_in_an_upstream_error_body_never_reaches_the_client(firewall: Firewall, upstream: TestUpstream) -> None:
    upstream.script.raw = RawAnswer(orjson.dumps({"error": {
        "message": f"Incorrect API key provided: {SECRET}.", "type": "invalid_request_error",
        "param": None, "code": "invalid_api_key"}}), status=401)
    with pytest.raises(openai.AuthenticationError) as err:
        chat(firewall)
    assert err.value.status_code == 401
    assert_clean(str(err.value.body) + str(err.value))


def test_a_key_in_a_plain_text_error_page_never_reaches_the_client(firewall: Firewall, upstream: TestUpstream) -> None:
    upstream.script.raw = RawAnswer(f"Traceback: config OPENAI_API_KEY={SECRET}\n".encode(), status=500,
                                    headers={"Content-Type": "text/html"})
    status, _, raw = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK}, Who())
    assert status == 502 and orjson.loads(raw)["error"]["code"] == "content_policy_violation"
    assert_clean(raw.decode())


def test_only_allowlisted_answer_headers_reach_the_client(firewall: Firewall, upstream: TestUpstream) -> None:
    upstream.script.raw = RawAnswer(completion({"content": "Hello."}), headers={
        "Content-Type": "application/json", "X-Debug-Api-Key": SECRET, "Server": "internal-llm-7.corp:8443",
        "openai-organization": "org-internal", "x-ratelimit-remaining-requests": SECRET,
        "x-ratelimit-limit-requests": "10000", "x-ratelimit-reset-tokens": "6m0s", "openai-processing-ms": "212",
        "Set-Cookie": f"session={SECRET}", "Link": f"<https://internal/?k={AWS}>"})
    status, headers, _ = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK}, Who())
    assert status == 200
    assert_clean(json.dumps(headers))
    lowered = {k.lower(): v for k, v in headers.items()}
    assert "openai-organization" not in lowered and "internal-llm" not in json.dumps(headers)
    assert lowered["x-ratelimit-limit-requests"] == "10000" and lowered["x-ratelimit-reset-tokens"] == "6m0s"
    assert lowered["openai-processing-ms"] == "212"


@pytest.mark.parametrize("ctype", ["text/plain", "text/event-stream", "application/octet-stream"])
def test_json_under_another_content_type_is_inspected_as_json(firewall: Firewall, upstream: TestUpstream,
                                                              ctype: str) -> None:
    upstream.script.raw = RawAnswer(completion({"content": f"The key is {SECRET}."}), headers={"Content-Type": ctype})
    answer = make_client(firewall, Who()).chat.completions.create(model="m", messages=ASK)
    assert_clean(answer.model_dump_json())
    assert answer.choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize("ctype", ["application/json", "text/plain", "text/html"])
def test_sse_under_another_content_type_is_inspected_as_a_stream(firewall: Firewall, upstream: TestUpstream,
                                                                 ctype: str) -> None:
    upstream.script.raw = RawAnswer(sse(*split("content")), headers={"Content-Type": ctype})
    received, finish = chat_stream(firewall)
    assert_clean(received)
    assert finish == "content_filter"


def test_a_plain_text_answer_is_inspected(firewall: Firewall, upstream: TestUpstream) -> None:
    upstream.script.raw = RawAnswer(f"Sure! Your key is {SECRET}".encode(), headers={"Content-Type": "text/plain"})
    status, _, raw = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK}, Who())
    assert status == 502 and orjson.loads(raw)["error"]["code"] == "content_policy_violation"
    upstream.script.raw = RawAnswer(b"Just a plain greeting.", headers={"Content-Type": "text/plain"})
    status, _headers, raw = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK}, Who())
    assert status == 200 and raw == b"Just a plain greeting."


UNDECODABLE: dict[str, Callable[[], RawAnswer]] = {
    "invalid UTF-8": lambda: RawAnswer(b'{"choices": [{"message": {"content": "' + SECRET.encode() + b'\xff\xfe"}}]}'),
    "invalid UTF-8 as text": lambda: RawAnswer(SECRET.encode() + b"\xc3\x28", headers={"Content-Type": "text/plain"}),
    "JSON that does not parse": lambda: RawAnswer(b'{"choices": [{"message": {"content": "' + SECRET.encode() + b'"'),
    "corrupt gzip": lambda: RawAnswer(gzip.compress(completion({"content": SECRET}))[:-12] + b"garbage!",
                                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}),
    "unknown encoding": lambda: RawAnswer(completion({"content": SECRET}),
                                          headers={"Content-Type": "application/json", "Content-Encoding": "br"}),
}


@pytest.mark.parametrize("make", UNDECODABLE.values(), ids=UNDECODABLE.keys())
def test_an_answer_that_cannot_be_decoded_is_refused_not_relayed(firewall: Firewall, upstream: TestUpstream,
                                                                 make: Callable[[], RawAnswer]) -> None:
    upstream.script.raw = make()
    with pytest.raises(openai.APIStatusError) as err:
        chat(firewall)
    assert err.value.status_code == 502
    assert isinstance(err.value.body, dict) and err.value.code in {"upstream_undecodable", "upstream_error"}
    assert_clean(str(err.value.body))


def test_an_invalid_utf8_event_ends_the_stream_with_an_error(firewall: Firewall, upstream: TestUpstream) -> None:
    upstream.script.raw = RawAnswer(sse(chunk({"content": "Hello"}), b'{"x": "' + SECRET.encode() + b'\xff"}'),
                                    headers={"Content-Type": "text/event-stream"})
    status, _, raw = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK, "stream": True}, Who())
    assert status == 200 and b"upstream_error" in raw
    assert_clean(raw.decode("utf-8", "replace"))


# -- JSON that readers read differently: a repeated key, data lines that are JSON one by one -------------

def repeated(body: bytes, field: str) -> bytes:
    """`body` with its placeholder key `dupe` renamed to `field`, which it then holds twice."""
    assert body.count(b'"dupe"') == 1
    return body.replace(b'"dupe"', f'"{field}"'.encode())


REPEATED_KEY_ANSWERS: dict[str, RawAnswer] = {
    "content": RawAnswer(repeated(completion({"dupe": SECRET, "content": "ok"}), "content")),
    "tool-call arguments": RawAnswer(repeated(completion({"content": None, "tool_calls": [{
        "id": "call_1", "type": "function", "function": {"name": "send", "dupe": json.dumps({"key": SECRET}),
                                                         "arguments": "{}"}}]}), "arguments")),
    "responses output_text": RawAnswer(repeated(responses_answer({
        "type": "message", "id": "m1", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "dupe": SECRET, "text": "ok", "annotations": []}]}), "text")),
    "error body": RawAnswer(repeated(orjson.dumps({"error": {
        "dupe": f"Incorrect API key provided: {SECRET}", "message": "bad key", "type": "invalid_request_error",
        "param": None, "code": "invalid_api_key"}}), "message"), status=401),
}


@pytest.mark.parametrize("answer", REPEATED_KEY_ANSWERS.values(), ids=REPEATED_KEY_ANSWERS.keys())
def test_an_answer_repeating_a_key_is_refused_not_relayed(firewall: Firewall, upstream: TestUpstream,
                                                          answer: RawAnswer) -> None:
    """The firewall's parser keeps the last value, a client's may keep the first: neither is trusted."""
    upstream.script.raw = answer
    with pytest.raises(openai.APIStatusError) as err:
        chat(firewall)
    assert err.value.status_code == 502 and err.value.code == "upstream_undecodable"
    assert "repeats a key" in err.value.message
    assert_clean(str(err.value.body))


def test_an_ordinary_answer_whose_text_looks_like_keys_arrives_unchanged(firewall: Firewall,
                                                                         upstream: TestUpstream) -> None:
    """Key-like text inside strings (`"a": "b"`) makes the check look twice, not refuse."""
    text = 'Use {"content": "x", "content": "y"} and "role":"user" as written.'
    upstream.script.raw = RawAnswer(completion({"content": text}))
    assert make_client(firewall, Who()).chat.completions.create(
        model="m", messages=ASK).choices[0].message.content == text


STREAMS_READ_TWO_WAYS: dict[str, list[bytes]] = {
    "repeated delta content": sse(chunk({"content": "Hello"}), repeated(orjson.dumps(chunk({
        "dupe": SECRET, "content": "ok"})), "content")),
    "repeated responses delta": sse(repeated(orjson.dumps({
        "type": "response.output_text.delta", "item_id": "m1", "output_index": 0, "content_index": 0,
        "dupe": SECRET, "delta": "ok"}), "delta")),
    "two data lines, half a key each": [
        b"data: " + orjson.dumps(chunk({"content": "Hello"})) + b"\n\n",
        b"data: " + orjson.dumps(chunk({"content": SECRET[:HALF]})) + b"\n"
        b"data: " + orjson.dumps(chunk({"content": SECRET[HALF:]})) + b"\n\n",
        b"data: [DONE]\n\n"],
}


@pytest.mark.parametrize("events", STREAMS_READ_TWO_WAYS.values(), ids=STREAMS_READ_TWO_WAYS.keys())
def test_a_stream_event_read_two_ways_ends_the_stream_with_an_error(firewall: Firewall, upstream: TestUpstream,
                                                                    events: list[bytes]) -> None:
    upstream.script.raw = RawAnswer(events, headers={"Content-Type": "text/event-stream"})
    status, _, raw = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK, "stream": True}, Who())
    assert status == 200 and b'"code":"upstream_error"' in raw
    assert_clean(raw.decode())
    assert SECRET[:HALF].encode() not in raw and SECRET[HALF:].encode() not in raw
    with pytest.raises(openai.APIError):
        chat_stream(firewall)


def test_text_data_lines_are_also_read_joined_as_a_line_by_line_reader_joins_them(firewall: Firewall,
                                                                                 upstream: TestUpstream) -> None:
    upstream.script.raw = RawAnswer([b"data: Hello\n\n", b"data: " + SECRET[:HALF].encode() + b"\ndata: "
                                     + SECRET[HALF:].encode() + b"\n\n", b"data: [DONE]\n\n"],
                                    headers={"Content-Type": "text/event-stream"})
    status, _, raw = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK, "stream": True}, Who())
    assert status == 200 and b"content_filter" in raw
    assert SECRET[:HALF].encode() not in raw and SECRET[HALF:].encode() not in raw


# -- many choices, tool calls or output items: bounded work, then refused ---------------------------------

def test_a_stream_of_thousands_of_choices_is_cut_and_the_firewall_keeps_answering(firewall: Firewall,
                                                                                 upstream: TestUpstream) -> None:
    """Each choice is a text of its own; a stream opening 5,000 of them must not freeze the loop."""
    upstream.script.raw = RawAnswer(sse(*({**chunk({"content": f"word {i} "}), "choices": [
        {"index": i, "delta": {"content": f"word {i} "}, "finish_reason": None}]} for i in range(5000))),
        headers={"Content-Type": "text/event-stream"})
    result: dict[str, Any] = {}

    def ask() -> None:
        result["answer"] = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK, "stream": True},
                                Who())

    checks = healthz_while(firewall, threading.Thread(target=ask))
    assert checks, "/healthz was never asked while the stream ran"
    status, _, raw = result["answer"]
    assert status == 200 and b'"code":"upstream_error"' in raw and b"more than 128 choices" in raw
    assert b'"index":128,' not in raw and raw.endswith(b"data: [DONE]\n\n")


def test_a_stream_of_many_tool_calls_is_cut(firewall: Firewall, upstream: TestUpstream) -> None:
    upstream.script.raw = RawAnswer(sse(*(chunk({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                                                 "function": {"name": "f", "arguments": "{}"}}]})
                                          for i in range(300))), headers={"Content-Type": "text/event-stream"})
    with pytest.raises(openai.APIError) as err:
        chat_stream(firewall)
    assert "more than 128 choices, tool calls or output items" in str(err.value)


def test_an_answer_with_too_many_choices_or_tool_calls_is_refused(firewall: Firewall, upstream: TestUpstream) -> None:
    calls = [{"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in range(129)]
    many = orjson.loads(completion({"content": "ok"}))
    many["choices"] = [{**many["choices"][0], "index": i} for i in range(129)]
    for body in (orjson.dumps(many), completion({"content": None, "tool_calls": calls})):
        upstream.script.raw = RawAnswer(body)
        with pytest.raises(openai.APIStatusError) as err:
            chat(firewall)
        assert err.value.status_code == 502 and err.value.code == "upstream_too_many_parts"
    upstream.script.raw = RawAnswer(completion({"content": None, "tool_calls": calls[:128]}))
    assert len(make_client(firewall, Who()).chat.completions.create(
        model="m", messages=ASK).choices[0].message.tool_calls or []) == 128


def test_the_page_chat_refuses_the_same_answers(firewall: Firewall, upstream: TestUpstream) -> None:
    """`/api/chat` asks the upstream itself: an answer repeating a key, or with too many choices,
    gives no answer there either."""
    many = orjson.loads(completion({"content": "ok"}))
    many["choices"] = [{**many["choices"][0], "index": i} for i in range(129)]
    for body, code in ((repeated(completion({"dupe": SECRET, "content": "ok"}), "content"), "upstream_error"),
                       (orjson.dumps(many), "upstream_too_many_parts")):
        upstream.script.raw = RawAnswer(body)
        status, _, raw = post(firewall, "/api/chat", {"message": "hello"}, Who())
        result = orjson.loads(raw)
        assert status == 200 and result["answer"] is None and (result["status"], result["code"]) == (502, code)
        assert_clean(raw.decode())


# -- a key cut across fields, parts, tool calls or choices (read as the reader joins them) -------------

HEAD, TAIL = SECRET[:19], SECRET[19:]  # neither half is a key on its own


def choice(index: int, content: str) -> dict[str, Any]:
    return {"index": index, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}


def two_choices(*choices: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": list(choices)})


def tool_call(i: int, arguments: str) -> dict[str, Any]:
    return {"id": f"call_{i}", "type": "function", "function": {"name": "send", "arguments": arguments}}


SPLIT_ANSWERS: dict[str, bytes] = {
    "across choices": two_choices(choice(0, f"The key is {HEAD}"), choice(1, f"{TAIL} as asked.")),
    "across choices listed out of order": two_choices(choice(1, f"{TAIL} as asked."), choice(0, f"The key: {HEAD}")),
    "across tool calls": completion({"content": None, "tool_calls": [tool_call(0, '{"a": "' + HEAD),
                                                                      tool_call(1, TAIL + '"}')]}),
    "across content and reasoning": completion({"reasoning_content": f"Key: {HEAD}", "content": TAIL}),
    "across an extra field and content": orjson.dumps({"x_note": f"Key: {HEAD}",
                                                        **orjson.loads(completion({"content": TAIL}))}),
}


@pytest.mark.parametrize("body", SPLIT_ANSWERS.values(), ids=SPLIT_ANSWERS.keys())
def test_a_key_cut_across_the_fields_of_a_chat_answer_never_reaches_the_client(firewall: Firewall,
                                                                                upstream: TestUpstream,
                                                                                body: bytes) -> None:
    upstream.script.raw = RawAnswer(body)
    answer = make_client(firewall, Who()).chat.completions.create(model="m", messages=ASK, n=2)
    assert_clean(answer.model_dump_json())
    assert {c.finish_reason for c in answer.choices} == {"content_filter"}


def test_a_key_cut_across_responses_api_content_parts_never_reaches_the_client(firewall: Firewall,
                                                                                upstream: TestUpstream) -> None:
    upstream.script.raw = RawAnswer(responses_answer({"type": "message", "id": "m1", "role": "assistant",
                                                      "status": "completed", "content": [
        {"type": "output_text", "text": f"Key: {HEAD}", "annotations": []},
        {"type": "output_text", "text": TAIL, "annotations": []}]}))
    answer = make_client(firewall, Who()).responses.create(model="m", input="what is the key?")
    assert answer.status == "incomplete" and answer.tool_choice == "auto"  # its settings kept
    assert_clean(answer.model_dump_json())


def multi(*pairs: tuple[int, str]) -> list[bytes]:
    return sse(*({**chunk({"content": text}), "choices": [{"index": i, "delta": {"content": text},
                                                           "finish_reason": None}]} for i, text in pairs))


SPLIT_STREAMS: dict[str, list[bytes]] = {
    "across choices": multi((0, "The key is "), (0, HEAD), (1, TAIL), (1, " as asked.")),
    "across interleaved choices": multi((0, "Key: "), (1, "Here: "), (0, HEAD), (1, TAIL)),
    "across tool-call indexes": sse(*(chunk({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                                             "function": {"name": "send", "arguments": a}}]})
                                      for i, a in ((0, '{"a": "' + HEAD), (1, TAIL + '"}')))),
    "across reasoning and content": sse(chunk({"reasoning_content": f"Key: {HEAD}"}), chunk({"content": TAIL})),
}


@pytest.mark.parametrize("name", SPLIT_STREAMS)
def test_a_key_cut_across_the_texts_of_a_stream_never_reaches_the_client(firewall: Firewall,
                                                                         upstream: TestUpstream, name: str) -> None:
    upstream.script.raw = RawAnswer(SPLIT_STREAMS[name], headers={"Content-Type": "text/event-stream"})
    received, finish = chat_stream(firewall)
    assert_clean(received)
    assert finish == "content_filter"


def test_a_key_cut_across_responses_api_content_parts_of_a_stream_never_reaches_the_client(
        firewall: Firewall, upstream: TestUpstream) -> None:
    upstream.script.raw = RawAnswer([e + b"\n\n" for e in (
        resp_event("response.output_text.delta", item_id="m1", output_index=0, content_index=0, delta="Key: " + HEAD),
        resp_event("response.output_text.delta", item_id="m1", output_index=0, content_index=1, delta=TAIL))],
        headers={"Content-Type": "text/event-stream"})
    events = list(make_client(firewall, Who()).responses.create(model="m", input="key?", stream=True))
    assert_clean("".join(e.model_dump_json() for e in events))
    assert events[-1].type == "response.incomplete"


def test_a_key_cut_across_the_parts_of_one_final_responses_event_never_reaches_the_client(
        firewall: Firewall, upstream: TestUpstream) -> None:
    """`response.completed` carries the whole answer again: its parts are joined like a JSON answer's."""
    final = orjson.loads(responses_answer({
        "type": "message", "id": "m1", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": f"Key: {HEAD}", "annotations": []},
                    {"type": "output_text", "text": TAIL, "annotations": []}]}))
    upstream.script.raw = RawAnswer([resp_event("response.completed", response=final) + b"\n\n"],
                                    headers={"Content-Type": "text/event-stream"})
    events = list(make_client(firewall, Who()).responses.create(model="m", input="key?", stream=True))
    assert_clean("".join(e.model_dump_json() for e in events))
    assert events[-1].type == "response.incomplete"


def test_in_redact_mode_a_key_in_one_field_is_masked_and_a_key_cut_across_two_is_emptied(
        upstream: TestUpstream, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: masking\nextends: production\nresponse_action: redact\nresponses:\n"
                      "  - when: {threat: [secret_leakage]}\n    do: [redact]\n  - $base\n")
    fw = start_firewall(upstream, tmp_path / "d", policy=str(policy))
    try:
        client = make_client(fw, Who())
        upstream.script.raw = RawAnswer(two_choices(choice(0, f"Key: {SECRET} ok"), choice(1, "Fine.")))
        answer = client.chat.completions.create(model="m", messages=ASK, n=2)
        assert [c.message.content for c in answer.choices] == ["Key: [REDACTED] ok", "Fine."]
        upstream.script.raw = RawAnswer(SPLIT_ANSWERS["across choices"])
        answer = client.chat.completions.create(model="m", messages=ASK, n=2)
        assert_clean(answer.model_dump_json())
        assert {c.finish_reason for c in answer.choices} == {"content_filter"}
        upstream.script.raw = RawAnswer(multi((0, "Key: "), (1, "Other: "), (0, f"{SECRET} ok"), (1, "fine."),
                                              (0, " More text follows here."), (1, " And here.")),
                                        headers={"Content-Type": "text/event-stream"})
        received, finish = chat_stream(fw)
        assert_clean(received)
        assert "[REDACTED]" in received and "And here." in received and finish is None
        upstream.script.raw = RawAnswer(SPLIT_STREAMS["across choices"], headers={"Content-Type": "text/event-stream"})
        received, finish = chat_stream(fw)
        assert_clean(received)
        assert finish == "content_filter"
    finally:
        fw.stop()


def test_texts_that_only_border_each_other_arrive_unchanged(firewall: Firewall, upstream: TestUpstream) -> None:
    body = two_choices(choice(0, "Paris is the capital of France."), choice(1, "Lyon is the third largest city."))
    upstream.script.raw = RawAnswer(body)
    status, _, got = post(firewall, "/v1/chat/completions", {"model": "m", "messages": ASK, "n": 2}, Who())
    assert status == 200 and orjson.loads(got) == orjson.loads(body)
    upstream.script.raw = RawAnswer(multi((0, "Paris is "), (1, "Lyon is "), (0, "in France."), (1, "in France too.")),
                                    headers={"Content-Type": "text/event-stream"})
    received, finish = chat_stream(firewall)
    assert finish is None and "in France too." in received


# -- the canary and hardening on every text endpoint (Responses API, legacy completions) ----------------

CANARY_SHAPE = re.compile(r"cnry-[0-9a-f]{16}")


def planted(upstream: TestUpstream, field: str) -> tuple[str, str]:
    """(the text the firewall sent in `field` of the last request, the canary planted in it)."""
    sent = upstream.requests[-1].json()[field]
    sent = sent if isinstance(sent, str) else sent[0]
    found = CANARY_SHAPE.search(sent)
    assert found is not None, f"no canary in the {field} the upstream received: {sent!r}"
    return sent, found.group(0)


def responses_text_answer(text: str, **extra: Any) -> bytes:
    return responses_answer({"type": "message", "id": "m1", "role": "assistant", "status": "completed",
                             "content": [{"type": "output_text", "text": text, "annotations": []}]}, **extra)


def learn_responses_canary(fw: Firewall, upstream: TestUpstream) -> tuple[str, str]:
    upstream.script.raw = RawAnswer(responses_text_answer("Hi."))
    answer = make_client(fw, Who()).responses.create(model="m", input="hi", instructions="Be brief.")
    assert answer.output_text == "Hi."
    sent, canary = planted(upstream, "instructions")
    assert sent.endswith("Be brief.") and sent != "Be brief."  # the preamble goes first
    return sent, canary


def test_responses_api_is_hardened_and_its_echo_of_the_instructions_is_the_callers_own(
        firewall: Firewall, upstream: TestUpstream) -> None:
    sent, canary = learn_responses_canary(firewall, upstream)
    upstream.script.raw = RawAnswer(responses_text_answer("Fine.", instructions=sent))  # the API echoes them
    answer = make_client(firewall, Who()).responses.create(model="m", input="hi", instructions="Be brief.")
    assert answer.status == "completed" and answer.output_text == "Fine."
    assert answer.instructions == "Be brief." and canary not in answer.model_dump_json()
    created = orjson.loads(responses_text_answer("", instructions=sent))
    upstream.script.raw = RawAnswer([e + b"\n\n" for e in (
        resp_event("response.created", response={**created, "status": "in_progress", "output": []}),
        resp_event("response.output_text.delta", item_id="m1", output_index=0, content_index=0, delta="Fine."),
        resp_event("response.completed", response=orjson.loads(responses_text_answer("Fine.", instructions=sent))))],
        headers={"Content-Type": "text/event-stream"})
    events = list(make_client(firewall, Who()).responses.create(model="m", input="hi", instructions="Be brief.",
                                                                stream=True))
    assert [e.type for e in events] == ["response.created", "response.output_text.delta", "response.completed"]
    assert events[-1].response.instructions == "Be brief." and events[-1].response.output_text == "Fine."
    assert canary not in "".join(e.model_dump_json() for e in events)


def test_the_canary_in_a_responses_api_answer_never_reaches_the_client(firewall: Firewall,
                                                                       upstream: TestUpstream) -> None:
    _, canary = learn_responses_canary(firewall, upstream)
    upstream.script.raw = RawAnswer(responses_text_answer(f"My marker is {canary}."))
    answer = make_client(firewall, Who()).responses.create(model="m", input="what is the weather?")
    assert answer.status == "incomplete" and canary[5:] not in answer.model_dump_json()
    half = len(canary) // 2
    upstream.script.raw = RawAnswer([e + b"\n\n" for e in (
        resp_event("response.output_text.delta", item_id="m1", output_index=0, content_index=0, delta=canary[:half]),
        resp_event("response.output_text.delta", item_id="m1", output_index=0, content_index=0, delta=canary[half:]),
        resp_event("response.completed", response=orjson.loads(responses_text_answer(canary))))],
        headers={"Content-Type": "text/event-stream"})
    events = list(make_client(firewall, Who()).responses.create(model="m", input="what is the weather?", stream=True))
    received = "".join(e.model_dump_json() for e in events)
    assert canary[5:] not in received and canary[5:][:half] not in received.replace(canary[:half], "")
    assert events[-1].type == "response.incomplete"


def test_legacy_completions_are_hardened_and_the_canary_never_reaches_the_client(firewall: Firewall,
                                                                                 upstream: TestUpstream) -> None:
    def text_answer(text: str) -> bytes:
        return orjson.dumps({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                             "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}]})

    client = make_client(firewall, Who())
    upstream.script.raw = RawAnswer(text_answer(" there"))
    assert client.completions.create(model="m", prompt="Hello").choices[0].text == " there"
    sent, canary = planted(upstream, "prompt")
    assert sent.endswith("Hello") and sent != "Hello"
    upstream.script.raw = RawAnswer(text_answer(f" the marker is {canary}"))
    answer = client.completions.create(model="m", prompt="The weather today is")
    assert answer.choices[0].finish_reason == "content_filter" and canary[5:] not in answer.model_dump_json()
    half = len(canary) // 2
    upstream.script.raw = RawAnswer(sse(*({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                                           "choices": [{"index": 0, "text": part, "finish_reason": None}]}
                                          for part in ("marker: " + canary[:half], canary[half:] + " ok"))),
                                    headers={"Content-Type": "text/event-stream"})
    parts = list(client.completions.create(model="m", prompt="The weather today is", stream=True))
    received = "".join(p.model_dump_json() for p in parts)
    assert canary[5:] not in received and canary[half:] not in received
    assert parts[-1].choices[0].finish_reason == "content_filter"


NATO = dict(zip("0123456789abcdef", ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                      "Alfa", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot"), strict=True))
CANARY_FORMS: dict[str, Callable[[str], str]] = {
    "ROT13": lambda c: codecs.encode(c, "rot13"),
    "base32": lambda c: base64.b32encode(c.encode()).decode(),
    "one character a line": lambda c: "\n".join(c),
    "NATO alphabet": lambda c: " ".join(NATO[ch] for ch in c[5:]),
    "reversed, dotted": lambda c: ".".join(c[::-1]),
    "list of characters": lambda c: str(list(c[5:])),
    "JSON list, one a line": lambda c: json.dumps(list(c[5:]), indent=4),
    "decimal codes": lambda c: " ".join(str(ord(ch)) for ch in c[5:]),
    "hex code list": lambda c: str([hex(ord(ch)) for ch in c[5:]]),
    "in two halves": lambda c: f"the first half is {c[5:13]}, and the second half... {c[13:]}",
    "second half alone": lambda c: f"part two: {c[13:]}",
    "table cells": lambda c: "| " + " | ".join(c[5:]) + " |\n|" + "---|" * 16,
    "dashes between": lambda c: " - - ".join(c[5:]),
}


@pytest.mark.parametrize("form", CANARY_FORMS.values(), ids=CANARY_FORMS.keys())
def test_the_canary_in_a_promised_encoding_never_reaches_the_client(firewall: Firewall, upstream: TestUpstream,
                                                                    form: Callable[[str], str]) -> None:
    client = make_client(firewall, Who())
    client.chat.completions.create(model="m", messages=ASK)
    _, canary = planted_system(upstream)
    dressed = form(canary)
    upstream.script.raw = RawAnswer(completion({"content": f"Here you go:\n{dressed}\nAnything else?"}))
    answer = client.chat.completions.create(model="m", messages=ASK)
    assert answer.choices[0].finish_reason == "content_filter" and dressed not in answer.model_dump_json()
    third = len(dressed) // 3
    upstream.script.raw = RawAnswer(sse(*(chunk({"content": part}) for part in (
        "Here you go: " + dressed[:third], dressed[third:2 * third], dressed[2 * third:] + " ok"))),
        headers={"Content-Type": "text/event-stream"})
    received, finish = chat_stream(firewall)
    assert finish == "content_filter" and dressed[third:2 * third] not in received


def planted_system(upstream: TestUpstream) -> tuple[str, str]:
    system = upstream.requests[-1].json()["messages"][0]
    assert system["role"] == "system"
    found = CANARY_SHAPE.search(system["content"])
    assert found is not None
    return system["content"], found.group(0)


# -- the pure decisions, for any input ----------------------------------------------------------------

_KEYS = st.sampled_from(["content", "text", "message", "error", "choices", "output", "delta", "id", "type",
                         "reasoning", "refusal", "arguments", "name", "x", "logprobs", "summary", "data"])
_ANSWERS = st.recursive(
    st.one_of(st.none(), st.integers(), st.booleans(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=20)


def _plant(value: Any, where: int) -> Any:
    """`value` with SECRET put in its `where`-th container (as a new key or an element)."""
    containers: list[Any] = []

    def visit(v: Any) -> None:
        if isinstance(v, (dict, list)):
            containers.append(v)
            for item in (v.values() if isinstance(v, dict) else v):
                visit(item)
    visit(value)
    if not containers:
        return {"planted": SECRET}
    target = containers[where % len(containers)]
    if isinstance(target, dict):
        target["planted"] = SECRET
    else:
        target.append(SECRET)
    return value


@settings(max_examples=200, deadline=None)
@given(answer=_ANSWERS, where=st.integers(min_value=0, max_value=50))
def test_response_texts_reads_a_key_put_anywhere_in_any_answer(answer: Any, where: int) -> None:
    """Fail closed: whatever the shape, a string the answer carries is among the texts inspected
    (opaque base64 payloads aside), whole or within the joined labels."""
    texts = [item.text for item in response_texts("chat/completions", _plant(answer, where))]
    assert any(SECRET in text for text in texts)


def test_response_texts_gives_opaque_payloads_apart() -> None:
    """Read with the secret rules only, as written (base64 matches personal-data rules by chance)."""
    answer = {key: SECRET for key in OPAQUE}
    items = response_texts("responses", answer)
    assert [item.path for item in items if SECRET in item.text] == [OPAQUE_TEXT] * len(OPAQUE)


@settings(max_examples=200, deadline=None)
@given(answer=_ANSWERS, where=st.integers(min_value=0, max_value=50))
def test_response_texts_reads_a_key_named_after_a_secret_anywhere(answer: Any, where: int) -> None:
    planted = json.loads(json.dumps(_plant(answer, where)).replace(f'"planted": "{SECRET}"', f'"{SECRET}": 1')
                         .replace(f'"{SECRET}"]', f'{{"{SECRET}": 1}}]').replace(f'"{SECRET}",', f'{{"{SECRET}": 1}},'))
    assert SECRET + '": 1' in json.dumps(planted)
    texts = [item.text for item in response_texts("chat/completions", planted)]
    assert any(SECRET in t for t in texts)


@settings(max_examples=200, deadline=None)
@given(name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=40),
       prefix=st.text(max_size=6), suffix=st.text(max_size=6))
def test_no_header_value_carrying_a_key_is_relayed(name: str, prefix: str, suffix: str) -> None:
    for header in (name, "x-ratelimit-" + name, "openai-processing-ms", "retry-after", "x-should-retry"):
        assert not relayed_header(header, prefix + SECRET + suffix)
        assert not relayed_header(header, prefix + AWS + suffix)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=64), ctype=st.sampled_from(["application/json", "text/plain", "text/event-stream",
                                                            "application/octet-stream", "application/problem+json"]))
def test_an_answer_is_json_text_or_refused_never_relayed_unread(body: bytes, ctype: str) -> None:
    answer = read_answer(body, ctype)
    if answer.kind == "json":
        assert orjson.dumps(answer.value) is not None
    elif answer.kind == "text":
        assert answer.value == body.decode("utf-8").removeprefix("\ufeff")
    elif answer.kind == "empty":
        assert not body.strip()
    else:
        assert answer.kind in ("undecodable", "ambiguous")


def test_sse_is_told_by_its_first_bytes_not_its_label() -> None:
    assert is_sse(b"data: {}") and is_sse(b"\n\nevent: x\ndata: 1") and is_sse(b": keep-alive\n\n")
    assert is_sse(b"\xef\xbb\xbfdata: {}")
    assert not is_sse(b'{"data": 1}') and not is_sse(b"Hello") and not is_sse(b"")
