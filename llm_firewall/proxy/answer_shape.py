"""What an upstream answer is, read from its bytes: the Content-Type header does not decide.

A hostile or broken upstream can label JSON `text/plain`, or SSE `application/json`; a client's
SDK parses the body whatever the label says. So the firewall inspects what the body is: a body
that parses as JSON as JSON, an SSE-framed body as a stream, other text as text, and refuses one
it cannot decode (invalid UTF-8; JSON under a JSON label that does not parse) rather than relay
it unread, and one whose JSON repeats a key (the firewall and the client would read different
values: `strict_json`). Pure: no aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from llm_firewall.proxy import strict_json

# Enough leading bytes to tell `data:`/`event:`/`retry:` from `{`, `[` or prose.
HEAD_BYTES = 8
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")
_BOM = b"\xef\xbb\xbf"


def is_sse(head: bytes) -> bool:
    """Whether a body starting with `head` is framed as server-sent events.

    The first non-blank line begins with an SSE field or a comment. Decided on the first bytes
    so that a stream is relayed as it arrives.
    """
    start = head.removeprefix(_BOM).lstrip(b" \t\r\n")
    return start.startswith(_SSE_FIELDS)


def json_label(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


@dataclass(frozen=True, slots=True)
class Answer:
    kind: str  # "empty" | "json" | "text" | "undecodable" | "ambiguous" (JSON repeating a key)
    value: Any = None  # the parsed JSON, or the decoded text
    reason: str = ""  # why an answer is undecodable


def too_many_parts(value: Any, limit: int) -> str | None:
    """What an answer has more than `limit` of (choices, tool calls of one message, output
    items), or None. Every part is inspected and joined with the others: their number sets the
    work, so it is bounded as the stream guard bounds it (`max_parts`)."""
    if type(value) is not dict:
        return None
    choices = value.get("choices")
    if type(choices) is list:
        if len(choices) > limit:
            return "choices"
        for choice in choices:
            message = choice.get("message") if type(choice) is dict else None
            calls = message.get("tool_calls") if type(message) is dict else None
            if type(calls) is list and len(calls) > limit:
                return "tool calls"
    response = value.get("response")
    for holder in (value, response if type(response) is dict else {}):
        output = holder.get("output")
        if type(output) is list and len(output) > limit:
            return "output items"
    return None


def read_answer(data: bytes, content_type: str) -> Answer:
    """The shape of a whole (non-SSE) answer body and its value."""
    if not data.strip():
        return Answer("empty")
    try:
        return Answer("json", strict_json.loads(data))
    except strict_json.RepeatedKeyError as exc:
        return Answer("ambiguous", reason=f"repeats a key in one JSON object ({exc.key!r})")
    except orjson.JSONDecodeError:
        pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Answer("undecodable", reason="is not valid UTF-8")
    if json_label(content_type):
        return Answer("undecodable", reason="is labelled JSON but does not parse")
    return Answer("text", text.removeprefix("\ufeff"))
