"""JSON read the same by every reader: a text that repeats a key in one object is refused.

orjson (like most fast parsers) keeps the last value of a repeated key, other readers keep the
first, so a body whose keys repeat means different things to the firewall and to whoever reads
it next: `{"content": "<key>", "content": "ok"}` was inspected as "ok" and relayed as sent.
Requests and answers (whole bodies, stream events, error bodies) are all read through `loads`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson


class RepeatedKeyError(ValueError):
    """A JSON object repeats a key (`key` names it): readers disagree on which value counts."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r} in one JSON object")
        self.key = key


class _Constant(ValueError):
    """NaN/Infinity: orjson refuses them already; the stdlib decoder must not accept them."""


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKeyError(key)
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise _Constant(f"{name} is not valid JSON")


_STRICT = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)

# Where a key may end: a quote, optional whitespace, a colon. Every key's closing quote is one;
# an escaped quote or a string that starts with a colon may be one too, which only ever adds.
_KEY_END = re.compile(rb'"[ \t\n\r]*:')


def key_count(value: Any) -> int:
    """Keys in every object of a parsed value."""
    count, todo = 0, [value]
    while todo:
        item = todo.pop()
        if type(item) is dict:
            count += len(item)
            todo.extend(item.values())
        elif type(item) is list:
            todo.extend(item)
    return count


def loads(raw: bytes) -> Any:
    """Parse JSON with orjson, refusing a repeated key (RepeatedKeyError).

    Compact JSON as orjson writes it (what upstreams stream) is proven whole when writing the
    parsed value gives the same bytes back (~1.5 us for a chunk). Otherwise a repeated key leaves
    fewer keys in the parsed value than the raw text has key ends, so only then (or when a string
    fakes a key end) does the stdlib decoder, which refuses duplicates, read the text again.
    Invalid JSON raises orjson.JSONDecodeError (a ValueError), as orjson.loads does.
    """
    value = orjson.loads(raw)
    if type(value) not in (dict, list):
        return value
    try:
        if orjson.dumps(value) == raw:
            return value
    except orjson.JSONEncodeError:  # deeper than orjson writes (254 levels): counted below
        pass
    if len(_KEY_END.findall(raw)) != key_count(value):
        try:
            _STRICT.decode(raw.decode("utf-8"))
        except RepeatedKeyError:
            raise
        except (ValueError, RecursionError):  # nested past the stdlib's reach: not checked, refused
            raise RepeatedKeyError("(nested too deeply to check)") from None
    return value
