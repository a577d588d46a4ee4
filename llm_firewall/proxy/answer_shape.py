"""What an upstream answer is, read from its bytes: the Content-Type header does not decide.

A hostile or broken upstream can label JSON `text/plain`, or SSE `application/json`; a client's
SDK parses the body whatever the label says. So the firewall inspects what the body is: a body
that parses as JSON as JSON, an SSE-framed body as a stream, other text as text, and refuses one
it cannot decode (invalid UTF-8; JSON under a JSON label that does not parse) rather than relay
it unread. Pure: no aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

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
    kind: str  # "empty" | "json" | "text" | "undecodable"
    value: Any = None  # the parsed JSON, or the decoded text
    reason: str = ""  # why an answer is undecodable


def read_answer(data: bytes, content_type: str) -> Answer:
    """The shape of a whole (non-SSE) answer body and its value."""
    if not data.strip():
        return Answer("empty")
    try:
        return Answer("json", orjson.loads(data))
    except orjson.JSONDecodeError:
        pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Answer("undecodable", reason="is not valid UTF-8")
    if json_label(content_type):
        return Answer("undecodable", reason="is labelled JSON but does not parse")
    return Answer("text", text.removeprefix("\ufeff"))
