"""Server-sent events framing: split an upstream byte stream into whole events, losslessly.

The relay forwards each event's original bytes, so a benign stream reaches the client exactly as
the upstream sent it; only events the firewall changes are re-encoded. An event carrying data
keeps only its `data:`, `event:`, `id:` and numeric `retry:` lines: comments and unknown fields,
which no client reads but a raw reader sees, are dropped from it. (A comment-only event, such as
a keep-alive, is inspected whole instead.)

An event's JSON is read by `strict_json`: one repeating a key raises ValueError (the relay ends
the stream with an error), as does one whose data lines are JSON one by one but not joined
(`data: {..half a key..}` twice): the spec joins them with "\n", which is not JSON, while a
client reading line by line would take each chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from llm_firewall.proxy import strict_json

_SEPARATORS = (b"\r\n\r\n", b"\n\n", b"\r\r")
_UNPARSED: Any = object()


@dataclass(slots=True)
class Event:
    raw: bytes  # the event exactly as received, separator included
    data: bytes | None  # the joined `data:` lines, or None for comment/keep-alive events
    event: str | None = None
    _payload: Any = _UNPARSED  # json() is asked by the relay and by the guard: decode once
    meta: str | None = None  # the `event:` and `id:` values: text a client receives, read like labels

    @property
    def is_done(self) -> bool:
        data = self.data
        return data is not None and len(data) < 64 and data.strip() == b"[DONE]"

    def json(self) -> Any:
        """The event's JSON payload, or None when it is not JSON (decoded once, then shared).
        `[DONE]` is not JSON, so it needs no check of its own. ValueError for JSON that readers
        would read differently (see the module docstring)."""
        if self._payload is _UNPARSED:
            data = self.data
            try:
                self._payload = None if data is None else strict_json.loads(data)
            except orjson.JSONDecodeError:
                if data is not None and b"\n" in data and any(
                        line.lstrip()[:1] in (b"{", b"[") for line in data.split(b"\n")):
                    raise ValueError("an event whose data lines are JSON chunks but not one JSON value") from None
                self._payload = None
        return self._payload


def _parse(raw: bytes) -> Event:
    # Fast path: the usual `data: {...}\n\n` event, one line (its only newlines are the two that
    # end it; a lone \r would end a line too), no other fields.
    if raw.startswith(b"data: ") and raw.find(b"\n") == len(raw) - 2 and raw.endswith(b"\n\n") and b"\r" not in raw:
        return Event(raw, raw[6:-2], None)
    data_lines: list[bytes] = []
    name: str | None = None
    meta: list[str] = []
    kept: list[bytes] = []
    changed = False
    for line in raw.splitlines():
        field, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if field == b"data":
            data_lines.append(value)
            kept.append(line)
        elif field in (b"event", b"id"):
            text = value.decode("utf-8", "replace")
            changed |= text.encode("utf-8") != value
            if field == b"event":
                text = name = text.strip()
            meta.append(text)
            kept.append(field + b": " + text.encode("utf-8"))
        elif field == b"retry" and value.isdigit():
            kept.append(line)
        elif line:  # a comment or a field clients ignore
            changed = True
    if data_lines and changed:  # dropped from an event with data: nothing a client reads is relayed unread
        raw = b"\n".join(kept) + b"\n\n"
    return Event(raw, b"\n".join(data_lines) if data_lines else None, name, meta="\n".join(meta) if meta else None)


class EventSplitter:
    """Feed raw chunks, get whole events; keeps at most one partial event between calls.

    The partial event is kept as the reads that brought it and joined once, when its end
    arrives; each new read is searched for an end only with the three bytes before it (a
    separator may straddle two reads). Rebuilding and rescanning the whole partial event on
    every read was quadratic: an 8 MiB event in 16 KiB reads cost 1.8 s of CPU.
    """

    def __init__(self, max_event_bytes: int = 8 * 1024 * 1024) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[Event]:
        """The events `chunk` completes, in order."""
        if not self._parts:
            if chunk.endswith(b"\n\n") and chunk.find(b"\n\n") == len(chunk) - 2 \
                    and b"\r" not in chunk:  # (endswith: find's -1 equals len - 2 for a 1-byte chunk)
                return [_parse(chunk)]  # a paced stream's usual read: exactly one whole event
            return self._split(chunk)
        edge = self._parts[-1][-3:] + chunk
        if not any(sep in edge for sep in _SEPARATORS):  # still inside the same event
            self._keep(chunk)
            return []
        parts, self._parts, self._size = self._parts, [], 0
        parts.append(chunk)
        return self._split(b"".join(parts))

    def _keep(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size > self._max:
            raise ValueError("server-sent event larger than the firewall accepts")

    def _split(self, buf: bytes) -> list[Event]:
        events = []
        pos = 0
        crlf = b"\r" in buf  # the common case (LF only) needs one search per event
        while True:
            if crlf:
                cut, sep_len = -1, 0
                for sep in _SEPARATORS:
                    idx = buf.find(sep, pos)
                    if idx != -1 and (cut == -1 or idx < cut):
                        cut, sep_len = idx, len(sep)
            else:
                cut, sep_len = buf.find(b"\n\n", pos), 2
            if cut == -1:
                break
            events.append(_parse(buf[pos: cut + sep_len]))
            pos = cut + sep_len
        if pos < len(buf):
            self._keep(buf[pos:])
        return events

    def flush(self) -> Iterator[Event]:
        """Whatever the upstream left without a closing blank line (a cut stream)."""
        raw = b"".join(self._parts)
        self._parts, self._size = [], 0
        if raw.strip():
            yield _parse(raw + b"\n\n")


def encode(payload: Any) -> bytes:
    """One `data:` event for a JSON payload."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def with_payload(event: Event, payload: Any) -> Event:
    """`event` carrying a changed JSON payload (its `event:` name kept; other fields dropped)."""
    name = b"event: " + event.event.encode("utf-8") + b"\n" if event.event else b""
    raw = name + encode(payload)
    return Event(raw, raw[len(name) + 6:-2], event.event, payload, event.meta)


DONE = b"data: [DONE]\n\n"
