"""RE2 searches through the binding itself, skipping the Python wrapper's per-match work.

Why: `re2.compile(p).search(text)` spends ~5 µs per match in pure-Python offset bookkeeping
(generator, sorted offsets, byte-to-character maps) around a ~1 µs native search. On the
inline path a rule is searched after every set hit, so the wrapper dominated. These helpers
take the UTF-8 bytes once (the engine already encodes each view for its set pass) and convert
byte offsets to character offsets only when the text is not ASCII.

A `Lead` (a literal every match contains, and how many bytes before it a match can start) lets a
search begin just before the literal's first occurrence instead of at `pos`: no match can start
earlier, since it would contain an earlier occurrence. RE2 still sees the whole text as context,
so `\b` and `^` at the new start behave as before. An e-mail pattern then skips to the "@".

Relies on google-re2's private `_regexp.Match(anchor, bytes, pos, endpos)` binding (the engine
already uses the set's `_set.Match` the same way); `tests/detect` pins the behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import re2

_UNANCHORED = re2._Anchor.UNANCHORED

Lead = tuple[bytes, int]  # (literal in every match, most bytes a match can start before it)


def _start(data: bytes, pos: int, lead: Lead | None) -> int:
    """Where a search from `pos` may begin (-1: no match is possible)."""
    if lead is None:
        return pos
    at = data.find(lead[0], pos)
    return at if at < 0 else max(pos, at - lead[1])


def search_bytes(regex: Any, data: bytes, pos: int = 0, lead: Lead | None = None
                 ) -> tuple[int, int] | None:
    """Byte span of the first match of a compiled `re2` pattern in `data[pos:]`, or None."""
    pos = _start(data, pos, lead)
    if pos < 0:
        return None
    span = regex._regexp.Match(_UNANCHORED, data, pos, len(data))[0]
    return None if span[0] < 0 else span


def _chars(data: bytes, offset: int) -> int:
    return len(data[:offset].decode("utf-8", "surrogatepass"))


def byte_spans(regex: Any, data: bytes, lead: Lead | None = None) -> Iterator[tuple[int, int]]:
    """Byte spans of successive non-overlapping matches in `data` (like `finditer`), lazily."""
    match = regex._regexp.Match
    pos, end = 0, len(data)
    while pos <= end:
        if lead is not None:
            pos = _start(data, pos, lead)
            if pos < 0:
                return
        start, stop = match(_UNANCHORED, data, pos, end)[0]
        if start < 0:
            return
        yield start, stop
        if stop > start:
            pos = stop
        else:  # empty match: step over one whole character
            pos = stop + 1
            while pos < end and data[pos] & 0xC0 == 0x80:
                pos += 1


def iter_spans(regex: Any, text: str, data: bytes | None = None, lead: Lead | None = None
               ) -> Iterator[tuple[int, int]]:
    """Character spans of successive non-overlapping matches (like `finditer`), lazily."""
    if data is None:
        data = text.encode("utf-8", "surrogatepass")
    if len(data) == len(text):
        yield from byte_spans(regex, data, lead)
        return
    for start, stop in byte_spans(regex, data, lead):
        yield _chars(data, start), _chars(data, stop)


def search_span(regex: Any, text: str, data: bytes | None = None, lead: Lead | None = None
                ) -> tuple[int, int] | None:
    """Character span of the first match in `text` (`data` is its UTF-8 form, if at hand)."""
    if data is None:
        data = text.encode("utf-8", "surrogatepass")
    span = search_bytes(regex, data, 0, lead)
    if span is None or len(data) == len(text):
        return span
    return _chars(data, span[0]), _chars(data, span[1])


def first_start(regex: Any, text: str) -> int:
    """Character offset where the first match in `text` starts, or -1: `search_span` in one
    call, for the stream guard's two searches on every event."""
    data = text.encode("utf-8", "surrogatepass")
    start = regex._regexp.Match(_UNANCHORED, data, 0, len(data))[0][0]
    return start if start <= 0 or len(data) == len(text) else _chars(data, start)


def found(regex: Any, text: str) -> bool:
    """True when `regex` matches anywhere in `text`."""
    data = text.encode("utf-8", "surrogatepass")
    return regex._regexp.Match(_UNANCHORED, data, 0, len(data))[0][0] >= 0
