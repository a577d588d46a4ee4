"""Hold-back inspection of streamed answers: nothing is released before it has been checked.

Each choice's deltas (and each tool call's argument deltas) are assembled into one text. Response
rules match within `window` characters, so a text position more than `window` characters behind
the end can no longer be part of a future match. Without anchors, the unchecked tail plus that
overlap is scanned every `scan_every` characters and events whose text lies entirely in the
checked, final part are released.

With anchors (where a match of a rule the policy acts on can start, see
`Engine.stream_anchor`), text before the first anchor of the last `window` characters is
released at once, and so is the end of the text unless it is the unfinished beginning of an
anchor (`detect/partial.py`: "Thanks for" keeps "for", which may grow into an encoded run). Held
text is scanned when a clean scan would release some of it, or every `scan_every` characters. The
first text chunk's checked beginning leaves at once (time to first token), its rest once checked.
After that a chunk leaves whole, byte for byte as the upstream sent it, once all its text is
checked, usually when the next chunk arrives; only a long checked beginning (`EARLY_HEAD_CHARS`)
is cut off and sent ahead, in one event with the checked rest before it.

Only the end of each text is kept (what is held, what the next scan needs, a window and an anchor
back), so a long answer costs the same per event and holds a few KiB. Each event checks only the
texts it added to (and the joint text): a text that got nothing new is as checked as it was.
Distinct choices, tool calls and output items are capped per stream (`max_parts`): beyond it the
guard raises ValueError and the relay ends the stream with an error event. (Re-checking every
text on every event was quadratic: 3,000 tool calls froze the process for seconds.)

On a hit the stream is ended (finish_reason `content_filter`, or an in-band error event) or, in
redact mode, the match is masked in the held events.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
import re2

from llm_firewall.detect.normalize import dropped_count
from llm_firewall.detect.partial import Unsupported, prefix_pattern
from llm_firewall.detect.re2raw import first_start
from llm_firewall.domain import Finding, TextItem
from llm_firewall.proxy.openai_wire import (
    IDENTIFIERS,
    JOINED,
    LABELS,
    OPAQUE,
    OPAQUE_TEXT,
    TEXTS,
    joined_texts,
    keys_into,
    logprob_texts,
    set_path,
    walk_answer,
)
from llm_firewall.proxy.sse import DONE, Event, encode

Scan = Callable[[str], list[Finding]]
Redact = Callable[[str], tuple[str, list[Finding]]]
Key = tuple[Any, ...]


@dataclass(slots=True)
class _Segment:
    key: Key
    start: int
    end: int
    original: str
    link: _Segment | None = None  # a joint segment's own text: the segment it repeats (see JOINT)


@dataclass(slots=True)
class _Held:
    event: Event
    payload: Any
    segments: list[_Segment] = field(default_factory=list)
    rewritten: bool = False  # the payload was changed (part of it left): its raw bytes are stale
    plain: dict[str, Any] | None = None  # the delta of a plain content chunk with text (see _splittable)
    joint: list[_Segment] | None = None  # its segments in the joint text (see JOINT)


@dataclass(slots=True)
class _Text:
    """One choice's (or tool call's) text. Offsets count from the start of the stream; only the
    part from `base` on is kept (`StreamGuard._trim`), so a long answer costs neither memory nor
    an ever longer string to append to."""

    text: str = ""
    base: int = 0  # stream offset of text[0]
    scanned_to: int = 0
    safe: int = 0  # with anchors: text before this offset can no longer start a match
    trim_at: int = 0  # kept length above which the next append first drops what is no longer needed

    @property
    def end(self) -> int:
        return self.base + len(self.text)

    def slice(self, start: int, end: int) -> str:
        return self.text[start - self.base:end - self.base]


# Encoded text (base64/hex runs, percent-escapes, HTML entities, \u escapes) is decoded by the
# normaliser before the rules see it, so no rule anchor marks where such a match starts: hold
# from the start of anything that looks encoded.
ENCODED_ANCHOR = r"[A-Za-z0-9+/_=-]{20,}|%[0-9A-Fa-f]{2}|&#?[A-Za-z0-9]{1,8};|\\[ux][0-9A-Fa-f]{2}"
ENCODED_ANCHOR_WIDTH = 20


# A non-ASCII character may be dropped (zero-width, soft hyphen, variation selector) or folded
# (NFKC, look-alike letters) by the normaliser the rules read through (`detect/normalize.py`,
# the same for JSON and streamed answers). So an anchor may match only in the normalised text,
# starting at ASCII characters before the non-ASCII one ("s\u200bk-proj-..." reads "sk-proj-..."):
# a non-ASCII character anchors from the start of any unfinished anchor just before it.
NON_ASCII = r"[^\x00-\x7f]"


@lru_cache(maxsize=32)
def _compiled_anchors(pattern: str, tail: int = ENCODED_ANCHOR_WIDTH - 1) -> tuple[Any, Any | None]:
    """The anchor (rules', encoded text's, and a non-ASCII character with the unfinished anchor
    before it) and the pattern for its unfinished beginnings.

    Cached: a guard is built per stream, and compiling these costs milliseconds. The second is
    None when the anchor uses syntax `prefix_pattern` cannot rewrite: then a fixed tail is held,
    and as much is held before a non-ASCII character.
    """
    full = f"{pattern}|{ENCODED_ANCHOR}"
    try:
        prefixes = prefix_pattern(full)
        partial = re2.compile(f"(?:{prefixes})\\z")
        before = f"(?:{prefixes})"
    except (Unsupported, re2.error):
        partial = None
        before = f"(?s:.{{0,{tail}}})"
    return re2.compile(f"{full}|{before}{NON_ASCII}"), partial


# How far back (in windows of raw text) invisible characters may stretch the window: more
# padding than that is not followed, to keep a stream's held text and scans bounded.
WINDOW_STRETCH = 4

_PLAIN_DELTA = frozenset({"content", "role"})
# Delta fields a plain chunk may also carry as null (any other key is read as a label first).
_NULL_DELTA = frozenset({"refusal", "reasoning_content", "reasoning", "tool_calls", "function_call", "audio"})

# Once some text has left, a held chunk's checked beginning leaves early only when it is at
# least this long; a shorter one waits one event with the rest of its chunk, which then leaves
# byte for byte as the upstream sent it instead of being cut, joined and re-encoded (2-3 µs an
# event in the server). Models stream a token or a few words a chunk, whose checked beginning
# is a space or a word or two: holding it one event longer changes nothing a reader sees, while
# the first text (time to first token) and long chunks still leave at once.
EARLY_HEAD_CHARS = 32


def _splittable(payload: Any) -> dict[str, Any] | None:
    """The delta of a plain one-choice content chunk, the only kind safe to cut in two or to join
    with its neighbours.

    Tool-call names and ids, roles, logprobs and finish reasons must appear exactly once (SDKs
    concatenate repeated string fields), so events carrying them are released whole.
    """
    if not isinstance(payload, dict) or payload.get("type") is not None or payload.get("usage") is not None:
        return None  # usage, like a role, must be counted once
    choices = payload.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if type(choice) is not dict:
        return None
    delta = choice.get("delta")
    if (type(delta) is not dict or type(delta.get("content")) is not str
            or choice.get("finish_reason") is not None or choice.get("logprobs") is not None
            or not choice.keys() <= _CHOICE_KEYS):
        return None
    if not delta.keys() <= _PLAIN_DELTA and any(v is not None or k not in _NULL_DELTA
                                                for k, v in delta.items() if k not in _PLAIN_DELTA):
        return None  # null fields (`"refusal": null`) are fine: repeating a null adds nothing
    return delta


def _with_content(payload: dict[str, Any], content: str) -> dict[str, Any]:
    """A copy of a plain one-choice chunk (see `_splittable`) carrying `content` as its text."""
    choice = payload["choices"][0]
    return {**payload, "choices": [{**choice, "delta": {**choice["delta"], "content": content}}]}


# Every text of the stream joined in the order its pieces arrive, as a reader printing the deltas
# as they come reads them: a key cut across choices, fields, content parts or tool calls reads
# whole there. Kept (and scanned) only once a stream has a second text: a plain answer costs
# nothing more. Logprob tokens repeat the content, so they are left out of it.
JOINT: Key = ("joint",)


def _joins_joint(key: Key) -> bool:
    return not (len(key) == 3 and key[2] == "logprobs")


_MAX_LABELS = 1024  # distinct labels remembered per stream (a new id in every chunk is read each time)


def part_of(key: Key) -> Key:
    """The choice, tool call or output item a text belongs to (what `max_parts` counts)."""
    kind = key[0]
    if kind == "field" and len(key) == 5 and key[2] == "tool":
        return ("tool", key[1], key[3])
    if kind in ("content", "field", "text"):
        return ("choice", key[1])
    return key[2:] if kind == "resp" else key


# Choice and delta keys whose values the guard reads itself (the rest is read whole, see _whole_texts).
_CHOICE_KEYS = frozenset({"index", "delta", "finish_reason", "logprobs", "text"})
_DELTA_PARTS = frozenset({"tool_calls", "function_call", "audio"})


def _joined_tokens(logprobs: Any) -> str:
    """The text a chunk's logprobs spell out (chosen tokens, then each alternative), joined."""
    if not isinstance(logprobs, dict):
        return ""
    return "".join(item.text for item in logprob_texts(logprobs, ""))


def _text_segments(payload: Any) -> Iterator[tuple[Key, str, dict[str, Any], str]]:
    """Yield (buffer key, delta text, the dict holding it, its field) for every text delta.

    Chat chunks: every string field of a delta (`content`, `refusal`, `reasoning_content`,
    `reasoning`, any new one), tool-call and legacy function-call names and arguments, audio
    transcripts, logprob tokens; completions `text`; Responses API `*.delta` events. Each is
    assembled across chunks under its own key, so a secret split over deltas is seen whole.
    """
    if not isinstance(payload, dict):
        return
    kind = payload.get("type")
    if isinstance(kind, str):
        if kind.endswith(".delta") and isinstance(payload.get("delta"), str) and payload["delta"]:
            key: Key = ("resp", kind, payload.get("item_id") or payload.get("output_index"),
                        payload.get("content_index"), payload.get("summary_index"))
            yield key, payload["delta"], payload, "delta"
        return
    for choice in payload.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        idx = choice.get("index", 0)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for name, value in delta.items():
                if type(value) is str:
                    if value and name != "role":
                        yield ("content", idx) if name == "content" else ("field", idx, name), value, delta, name
                elif name == "tool_calls" and isinstance(value, list):
                    for call in value:
                        fn = call.get("function") if isinstance(call, dict) else None
                        if isinstance(fn, dict):
                            for part in ("name", "arguments"):
                                if isinstance(fn.get(part), str) and fn[part]:
                                    yield ("field", idx, "tool", call.get("index", 0), part), fn[part], fn, part
                elif name in _DELTA_PARTS and isinstance(value, dict):
                    for part in ("name", "arguments", "transcript"):
                        if isinstance(value.get(part), str) and value[part]:
                            yield ("field", idx, name, part), value[part], value, part
        elif isinstance(choice.get("text"), str) and choice["text"]:
            yield ("text", idx), choice["text"], choice, "text"
        tokens = _joined_tokens(choice.get("logprobs"))
        if tokens:
            yield ("field", idx, "logprobs"), tokens, choice, "logprobs"


def _whole_texts(payload: Any, labels: list[str]) -> list[TextItem]:
    """The strings of an event that are not deltas: complete texts, inspected at once.

    Responses API events other than `*.delta` (`*.done`, `response.output_item.done`, the final
    `response.completed` with the whole answer, `error`), and whatever else an upstream puts in a
    chunk: top-level fields, unknown choice fields, nested delta parts. Labels (ids, enums) go to
    `labels`. Its texts joined as a reader joins them come too (see joined_texts)."""
    if not isinstance(payload, dict):
        return list(walk_answer(payload, "", "response", labels))
    out: list[TextItem] = []
    typed = isinstance(payload.get("type"), str)
    labels.extend(payload)  # keys are labels too (nested ones: walk_answer, keys_into)
    for key, value in payload.items():
        if typed and key == "delta" and type(value) is str:
            continue  # assembled by _text_segments
        if key == "choices" and not typed and isinstance(value, list):
            for i, choice in enumerate(value):
                if not isinstance(choice, dict):
                    out.extend(walk_answer(choice, f"choices[{i}]", "response", labels))
                    continue
                labels.extend(choice)
                for name, item in choice.items():
                    path = f"choices[{i}].{name}"
                    if name == "logprobs":
                        keys_into(item, labels)  # its texts: _text_segments
                    if name == "delta" and isinstance(item, dict):
                        labels.extend(item)
                        for field, part in item.items():
                            if type(part) is not str and part is not None and field not in _DELTA_PARTS:
                                out.extend(walk_answer(part, f"{path}.{field}", "response", labels))
                            elif field in _DELTA_PARTS and isinstance(part, (dict, list)):
                                out.extend(_delta_part_rest(part, f"{path}.{field}", labels))
                    elif name == "finish_reason" and type(item) is str:
                        labels.append(item)
                    elif name not in _CHOICE_KEYS:
                        out.extend(walk_answer(item, path, "response", labels))
            continue
        if type(value) is str:
            if key in LABELS or key == "event":
                labels.append(value)
                continue
        out.extend(walk_answer(value, key, "response", labels))
    if len(out) > 1:  # a key cut across the parts of one event (`response.completed`)
        out += joined_texts(payload.get("response", payload), out)
    return out


def _delta_part_rest(part: Any, path: str, labels: list[str]) -> Iterator[TextItem]:
    """A tool-call / function-call / audio delta's strings other than the assembled ones."""
    for item in walk_answer(part, path, "tool_call", labels):
        if not item.path.endswith((".name", ".arguments", ".transcript")):
            yield item


class StreamGuard:
    """Feed upstream events in order; get back the bytes that are safe to send to the client."""

    def __init__(self, *, scan: Scan, redact: Redact | None = None, window: int = 256, scan_every: int = 32,
                 mode: str = "content_filter", on_findings: Callable[[list[Finding]], None] | None = None,
                 anchor: Any | None = None, anchor_width: int = 0, trim_at: int = 8192,
                 scan_opaque: Scan | None = None, max_parts: int = 128) -> None:
        self._scan = scan
        self._scan_opaque = scan_opaque or scan
        self._redact = redact
        self._window = max(1, window)
        # Scanning after every few-character delta costs more than it buys: text is only released
        # once it is `window` characters behind the scanned end, so scan once `scan_every` new
        # characters have arrived (and always at the end of the stream).
        self._scan_every = max(1, scan_every)
        # With anchors (patterns matching wherever a rule match may start), only text from the
        # first anchor in the window on, and an unfinished anchor at the very end, is held; plain
        # prose flows at once. Held text is scanned when a clean scan would release some of it,
        # and otherwise every `scan_every` characters (so a match still stops the stream early).
        self._tail = max(anchor_width, ENCODED_ANCHOR_WIDTH) - 1 if anchor is not None else 0
        self._anchor: Any
        self._partial: Any | None
        self._anchor, self._partial = (None, None) if anchor is None else _compiled_anchors(anchor.pattern, self._tail)
        # A text's kept part is trimmed once it is this long (and never below what scans need).
        self._trim_at = max(trim_at, 2 * (self._window + self._scan_every + self._tail))
        self._mode = mode  # content_filter | error_event | redact
        self._on_findings = on_findings
        self._texts: dict[Key, _Text] = {}
        self._dirty: dict[Key, None] = {}  # texts added to since their last check, in order
        self._parts: set[Key] = set()  # see part_of
        self._max_parts = max_parts
        self._joint: _Text | None = None  # see JOINT
        # The joint text since its last turn (where the next piece came from another text) repeats
        # one text, `_joint_from`, at offsets `_joint_shift` on: see _joint_quiet.
        self._joint_turn = 0
        self._joint_from: Key = JOINT
        self._joint_shift = 0
        self._held: deque[_Held] = deque()
        self._rewritten = False  # a redaction changed held text: compare segments on release
        self._text_out = False  # some text has been released (see EARLY_HEAD_CHARS)
        self._last_payload: dict[str, Any] | None = None
        self._labels: set[str] = set()  # labels (ids, model names) already inspected
        self.blocked = False
        self.padded = False  # invisible characters stretched a window too far (see _window_start)
        self.findings: list[Finding] = []
        self.assembled_chars = 0

    # -- public -------------------------------------------------------------------------------
    def feed(self, event: Event) -> bytes:
        """Take one upstream event; return what may be released now (possibly b"")."""
        if self.blocked:
            return b""
        if event.is_done:
            return self.finish(done=event.raw)
        if event.meta is not None and event.meta not in self._labels and not self._check_meta(event.meta):
            return self._terminate()
        payload = event.json()
        held = _Held(event, payload)
        if isinstance(payload, dict):
            self._last_payload = payload
            delta = _splittable(payload)
            if delta is not None and self._labels_known(payload):  # the usual chunk: one choice, content only
                if delta["content"]:
                    held.plain = delta
                    self._add(held, ("content", payload["choices"][0].get("index", 0)), delta["content"])
            else:
                if not self._check_whole(held):
                    return self._terminate()
                for key, text, _, _ in _text_segments(payload):
                    self._add(held, key, text)
        elif payload is not None:  # JSON, but not an object
            if not self._check_whole(held):
                return self._terminate()
        elif not self._add_raw(held):
            return self._terminate()
        self._held.append(held)
        if held.segments and not self._check(final=False):
            return self._terminate()
        return self._release(final=False)

    def _labels_known(self, payload: dict[str, Any]) -> bool:
        """Whether a plain chunk's other top-level fields are labels already inspected (its id,
        model, ...), opaque padding or scalars: then only its content needs reading."""
        labels = self._labels
        containers = 0
        for key, value in payload.items():  # this runs for every chunk
            if key not in labels:
                return False
            kind = type(value)
            if kind is str:
                if value not in labels and not self._only_padding_is_new(payload):
                    return False
            elif kind is list or kind is dict:
                containers += 1
        return containers == 1  # `choices`, checked by _splittable

    def _only_padding_is_new(self, payload: dict[str, Any]) -> bool:
        labels = self._labels
        return all(type(v) is not str or v in labels or k in OPAQUE for k, v in payload.items())

    def _check_meta(self, meta: str) -> bool:
        """An event's `event:` name and `id:` (see sse.Event.meta), read once per stream like a
        label. False when the stream must stop."""
        self._labels.add(meta)
        findings = self._scan(meta)
        if findings:
            self._record(findings)
        return not findings

    def _check_whole(self, held: _Held) -> bool:
        """Inspect an event's complete texts (see `_whole_texts`) and new labels at once; masks
        them in redact mode. False when the stream must stop."""
        labels: list[str] = []
        items = _whole_texts(held.payload, labels)
        new = [label for label in labels if label not in self._labels]
        if new:
            if len(self._labels) > _MAX_LABELS:
                self._labels.clear()
            self._labels.update(new)
            items.append(TextItem("\n".join(new), "response", IDENTIFIERS))
        for item in items:
            opaque = item.path == OPAQUE_TEXT
            findings = self._scan_opaque(item.text) if opaque else self._scan(item.text)
            if not findings:
                continue
            if item.path == TEXTS and held.rewritten and not any(
                    self._scan(t.text) for t in _whole_texts(held.payload, []) if t.path == TEXTS):
                continue  # what it read was masked in its own fields just before
            self._record(findings)
            if self._mode != "redact" or self._redact is None or item.path.startswith("#") \
                    or item.path.endswith(JOINED) or not item.path:
                return False
            masked, _ = self._redact(item.text)
            if masked == item.text or self._scan(masked):
                return False
            set_path(held.payload, item.path, masked)
            held.rewritten = True
        return True

    def _add_raw(self, held: _Held) -> bool:
        """An event whose data is not JSON (or a comment): its text is inspected like any other,
        never passed unread, and its data lines also joined with nothing between them (the spec
        joins them with "\n", a reader going line by line may not). False when the stream must
        stop; ValueError when it is not UTF-8."""
        event = held.event
        try:
            text = (event.raw if event.data is None else event.data).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("an event that is not valid UTF-8") from None
        if event.data is not None:
            if "\n" in text:  # several data lines: a reader going line by line joins them with nothing
                found = self._scan(text.replace("\n", ""))
                if found:
                    self._record(found)
                    return False
            if text:
                self._add(held, ("raw",), text)
            return True
        if text.strip() and self._scan(text):  # a comment or field-only event: complete already
            self._record(self._scan(text))
            return False
        return True

    def _add(self, held: _Held, key: Key, delta: str) -> None:
        buf = self._texts.get(key)
        if buf is None:
            self._parts.add(part_of(key))
            if len(self._parts) > self._max_parts:
                raise ValueError(f"more than {self._max_parts} choices, tool calls or output items in one stream")
            buf = self._texts[key] = _Text(trim_at=self._trim_at)
            if self._joint is None and _joins_joint(key):
                self._start_joint(key)
        start = buf.end
        if len(buf.text) > buf.trim_at:
            self._trim(key, buf)
        buf.text += delta
        self._dirty[key] = None
        self.assembled_chars += len(delta)
        seg = _Segment(key, start, start + len(delta), delta)
        held.segments.append(seg)
        joint = self._joint
        if joint is not None and _joins_joint(key):
            if len(joint.text) > joint.trim_at:
                self._trim(JOINT, joint)
            at = joint.end
            if key != self._joint_from:
                self._joint_turn, self._joint_from, self._joint_shift = at, key, at - start
            joint.text += delta
            if held.joint is None:
                held.joint = []
            held.joint.append(_Segment(JOINT, at, at + len(delta), delta, seg))

    def _start_joint(self, new: Key) -> None:
        """A second text begins: the joint text starts as the first one (as kept, with its held
        segments and how far it is checked), the new one's pieces are added from now on."""
        first = next((k for k in self._texts if k != new and _joins_joint(k)), None)
        if first is None:
            return
        buf = self._texts[first]
        self._joint = _Text(buf.text, buf.base, buf.scanned_to, buf.safe, buf.trim_at)
        self._joint_turn, self._joint_from, self._joint_shift = buf.base, first, 0
        for held in self._held:
            for seg in held.segments:
                if seg.key == first:
                    if held.joint is None:
                        held.joint = []
                    held.joint.append(_Segment(JOINT, seg.start, seg.end, seg.original, seg))

    def _trim(self, key: Key, buf: _Text) -> None:
        """Drop the start of a text that nothing can use any more: text before the oldest held
        segment, before where the next scan starts, and more than a window and an anchor's
        length back from the end. Without this a long answer was kept whole and copied on every
        append (quadratic: ~0.6 s of CPU for a 600 KB answer)."""
        need = buf.end - self._window - self._scan_every - self._tail
        need = min(need, self._safe_until_of(buf))
        for held in self._held:
            for seg in (held.joint or ()) if key == JOINT else held.segments:
                if seg.key == key and seg.start < need:
                    need = seg.start
        if need > buf.base:
            buf.text = buf.text[need - buf.base:]
            buf.base = need
        buf.trim_at = len(buf.text) + self._trim_at  # if held text pins the start, do not retry at once

    def finish(self, done: bytes | None = None) -> bytes:
        """The upstream ended: check what is left, release it, and close with [DONE] if it did."""
        if self.blocked:
            return b""
        if not self._check(final=True):
            return self._terminate()
        return self._release(final=True) + (done or b"")

    # -- internals ----------------------------------------------------------------------------
    def _check(self, *, final: bool) -> bool:
        """Scan each buffer's unchecked tail (with overlap); False when the stream must stop."""
        if self._anchor is not None:
            return self._check_anchored(final)
        for key, buf in self._buffers(final):
            end = buf.end
            if key == JOINT and self._joint_quiet(buf):
                continue
            if not final and end - buf.scanned_to < self._scan_every:
                continue
            start = self._window_start(buf, buf.scanned_to)
            if start < end and not self._scan_region(key, buf, start, end):
                return False
        return not self.padded

    def _check_anchored(self, final: bool) -> bool:
        """Anchored: scan text[safe:end] only when that could release text (or is due)."""
        for key, buf in self._buffers(final):
            end = buf.end
            if key == JOINT and self._joint_quiet(buf):
                continue
            if end == buf.scanned_to and not final:
                continue
            first = self._first_anchor(buf, buf.safe, end)
            if first is None:  # no match can start in text with no anchor: nothing to scan
                buf.scanned_to = end
                buf.safe = end if final else max(buf.safe, self._unfinished_from(buf, end))
                continue
            target = end if final else self._safe_target(buf, end, first)
            if not final and target <= buf.safe and end - buf.scanned_to < self._scan_every:
                continue  # held whatever the scan says: scan later
            if not self._scan_region(key, buf, buf.safe, end):
                return False
            if buf.end != end:  # masked: the offsets after the mask moved
                end = buf.end
                target = end if final else self._safe_target(buf, end, None)
            buf.safe = target
        return not self.padded

    def _buffers(self, final: bool) -> list[tuple[Key, _Text]]:
        """The texts to check and their keys, the joint text (when kept) last: it is read once
        the texts' own matches are masked. Before the end only the texts added to since their
        last check: a check of an unchanged text decides what it decided last time."""
        keys = self._texts if final else self._dirty
        out = [(key, self._texts[key]) for key in keys]
        self._dirty = {}
        if self._joint is not None:
            out.append((JOINT, self._joint))
        return out

    def _scan_region(self, key: Key, buf: _Text, start: int, end: int) -> bool:
        """Scan text[start:end]; mask or stop on a match. False when the stream must stop."""
        region = buf.slice(start, end)
        findings = self._scan(region)
        if findings and key == JOINT:
            return self._joint_masked(buf, start, end)
        if findings:
            if self._mode != "redact" or self._redact is None:
                self._record(findings)
                return False
            masked, _ = self._redact(region)
            self._record(findings)
            if masked == region or not self._masked_everything(masked):
                return False
            self._replace(key, start, end, masked)
        buf.scanned_to = buf.end
        return True

    def _joint_quiet(self, joint: _Text) -> bool:
        """Whether the joint text needs no scan now: everything before its last turn is checked
        (no match can start there any more), and after it the joint text repeats one text, whose
        own check already covers it; then it is as far checked as that text. Not after a mask,
        which makes the two differ."""
        if self._rewritten or self._safe_until_of(joint) < self._joint_turn:
            return False
        own = self._texts[self._joint_from]
        shift = self._joint_shift
        if self._anchor is not None:
            joint.safe = max(joint.safe, min(joint.end, own.safe + shift))
        joint.scanned_to = max(joint.scanned_to, min(joint.end, own.scanned_to + shift))
        return True

    def _joint_masked(self, buf: _Text, start: int, end: int) -> bool:
        """A match in the joint text. In redact mode it may be one already masked in its own text:
        the joint text's held part is taken again from the texts as they are now, and the stream
        goes on if that reads clean. A key cut across texts cannot be masked in place: the
        stream stops. False when it must stop."""
        segs = [seg for held in self._held for seg in held.joint or ()]
        if self._mode == "redact" and self._redact is not None and segs:
            current = []
            for seg in segs:
                link = seg.link
                assert link is not None
                current.append(self._texts[link.key].slice(link.start, link.end))
            at = segs[0].start
            if not self._scan(buf.slice(start, at) + "".join(current)):
                buf.text = buf.text[:at - buf.base]
                for seg, text in zip(segs, current, strict=True):
                    seg.start, seg.end = buf.end, buf.end + len(text)
                    buf.text += text
                buf.scanned_to = buf.end
                return True
        self._record(self._scan(buf.slice(start, end)))
        return False

    def _safe_target(self, buf: _Text, end: int, first: int | None) -> int:
        """Where `safe` may move once text[safe:end] is known clean.

        Text before the first anchor of the last `window` characters, and before an unfinished
        anchor at the end, can no longer start a match. `first` is the first anchor at or after
        `safe`, when already known.
        """
        lo = max(buf.safe, self._window_start(buf, end))
        held_from = self._unfinished_from(buf, end)
        if first is None or first < lo:
            first = self._first_anchor(buf, lo, end)
        if first is not None:
            held_from = min(held_from, first)
        return max(buf.safe, held_from)

    def _window_start(self, buf: _Text, end: int) -> int:
        """Where the last `window` characters before `end` begin, counted as the rules read the
        text: invisible characters, which the normaliser drops, do not count (so padding a secret
        with them does not stretch it past the window). Text padded more than WINDOW_STRETCH
        windows back sets `padded`: the stream is stopped rather than its held text let grow."""
        lo = end - self._window
        limit = end - WINDOW_STRETCH * self._window
        floor = max(buf.base, limit)
        extra = dropped_count(buf.slice(max(lo, floor), end))
        while extra and lo > floor:
            new_lo = max(floor, lo - extra)
            extra = dropped_count(buf.slice(new_lo, lo))
            lo = new_lo
        if extra and lo <= limit:
            self.padded = True
        return max(lo, buf.base)

    def _unfinished_from(self, buf: _Text, end: int) -> int:
        """Where an anchor that the next delta may complete could begin in the text's tail."""
        lo = max(buf.base, end - self._tail)
        if self._partial is None:
            return lo
        at = first_start(self._partial, buf.slice(lo, end))
        return end if at < 0 else lo + at

    def _first_anchor(self, buf: _Text, lo: int, end: int) -> int | None:
        """Offset of the first place in text[lo:end] where a match could start, if any."""
        at = first_start(self._anchor, buf.slice(lo, end))
        return None if at < 0 else lo + at

    def _masked_everything(self, masked: str) -> bool:
        return not self._scan(masked)

    def _record(self, findings: list[Finding]) -> None:
        self.findings.extend(findings)
        if self._on_findings is not None:
            self._on_findings(findings)

    def _replace(self, key: Key, start: int, end: int, new: str) -> None:
        """Swap buf[start:end] for `new` and move the held segments' offsets to match."""
        self._rewritten = True
        buf = self._texts[key]
        delta = len(new) - (end - start)
        buf.text = buf.text[:start - buf.base] + new + buf.text[end - buf.base:]
        for held in self._held:
            for seg in held.segments:
                if seg.key != key:
                    continue
                if seg.start >= end:
                    seg.start += delta
                elif seg.start > start:
                    seg.start = start + len(new)
                if seg.end >= end:
                    seg.end += delta
                elif seg.end > start:
                    seg.end = start + len(new)

    def _safe_until(self, key: Key) -> int:
        return self._safe_until_of(self._texts[key] if key != JOINT else self._joint)  # type: ignore[arg-type]

    def _safe_until_of(self, buf: _Text) -> int:
        """Text before this offset has been checked and can no longer be part of a match."""
        return buf.safe if self._anchor is not None else self._window_start(buf, buf.scanned_to)

    def _release(self, *, final: bool) -> bytes:
        """Encode what may leave now.

        A cut chunk's held rest and the checked start of the next chunk (plain content chunks of
        one choice) go out as one event, so the client gets about one event per upstream event
        rather than two; chunks that were never cut go out as the upstream sent them.
        """
        out: list[bytes] = []
        run: list[_Held] = []  # plain chunks released by this call, not yet encoded
        head = ""  # the checked start of the first still-held chunk, when it joins the run
        while self._held:
            held = self._held[0]
            if not final and self._still_held(held):
                joining = bool(run) and self._joins(run[-1], held)
                cut = self._cut_head(held, joining=joining)
                if cut is not None and joining:
                    head = cut[0]
                elif cut is not None:
                    out.append(self._encode_run(run, ""))
                    run = []
                    out.append(encode(cut[1]))
                break
            self._held.popleft()
            if held.segments:
                self._text_out = True
            if run and self._joins(run[-1], held):
                run.append(held)
                continue
            if run:
                out.append(self._encode_run(run, ""))
                run = []
            if self._anchor is not None and held.plain is not None:
                run.append(held)
            else:
                out.append(self._encode(held))
        if run:
            out.append(self._encode_run(run, head))
        return b"".join(out)

    def _still_held(self, held: _Held) -> bool:
        for seg in held.segments:
            if seg.end > self._safe_until(seg.key):
                return True
        if held.joint and self._joint is not None:
            return held.joint[-1].end > self._safe_until_of(self._joint)
        return False

    @staticmethod
    def _joins(last: _Held, held: _Held) -> bool:
        """Whether `held`'s text may ride in the event of `last` (a plain chunk): same choice, and
        no role to lose (a role is sent once, with the first chunk)."""
        return (held.plain is not None and "role" not in held.plain
                and held.segments[0].key == last.segments[0].key)

    def _cut_head(self, held: _Held, *, joining: bool) -> tuple[str, dict[str, Any]] | None:
        """Take the checked beginning off a held content chunk (it leaves now; the rest stays):
        its text and an event of its own for it.

        The first token of an answer usually ends in a word that could still grow into an
        encoded run; cutting the chunk there releases everything before it at once. A cut that
        would send only spaces as an event of their own is not made, nor, once text has left,
        one shorter than EARLY_HEAD_CHARS.
        """
        delta = held.plain
        if delta is None or self._anchor is None or self._joint is not None:
            return None
        seg = held.segments[0]
        cut = self._safe_until(seg.key)
        if not seg.start < cut < seg.end:
            return None
        if self._text_out and cut - seg.start < EARLY_HEAD_CHARS:
            return None
        buf = self._texts[seg.key]
        head = buf.slice(seg.start, cut)
        if not joining and head.isspace():
            return None
        self._text_out = True
        first = {} if joining else _with_content(held.payload, head)  # with the role, if any: it leaves first
        delta.pop("role", None)
        delta["content"] = seg.original = buf.slice(cut, seg.end)
        seg.start = cut
        held.rewritten = True
        return head, first

    def _encode_run(self, run: list[_Held], head: str) -> bytes:
        """Consecutive plain chunks: as sent when none was cut, else one event for their text (plus
        the checked start of the next chunk)."""
        if not run:
            return b""
        if not head and not any(held.rewritten for held in run):  # whole chunks: as sent
            return b"".join(map(self._encode, run))
        parts = []
        for held in run:
            seg = held.segments[0]
            parts.append(self._texts[seg.key].slice(seg.start, seg.end))
        return encode(_with_content(run[0].payload, "".join(parts) + head))

    def _encode(self, held: _Held) -> bytes:
        changed = held.rewritten
        if held.payload is None and held.segments:  # not JSON: its data lines, masked if need be
            seg = held.segments[0]
            current = self._texts[seg.key].slice(seg.start, seg.end)
            if current == seg.original:
                return held.event.raw
            return b"data: " + current.replace("\n", "\ndata: ").encode("utf-8") + b"\n\n"
        if held.segments and (changed or self._rewritten):
            for (key, _, holder, name), seg in zip(_text_segments(held.payload), held.segments, strict=False):
                current = self._texts[key].slice(seg.start, seg.end)
                if current != seg.original:  # joined logprob tokens cannot be rewritten: removed
                    holder[name] = current if type(holder[name]) is str else None
                    changed = True
        return encode(held.payload) if changed else held.event.raw

    def _terminate(self) -> bytes:
        """End the stream without releasing anything still held."""
        self.blocked = True
        self._held.clear()
        if self._mode == "error_event":
            return encode({"error": {"message": "The response was stopped by the content policy.",
                                     "type": "invalid_request_error", "param": None,
                                     "code": "content_policy_violation"}}) + DONE
        base = self._last_payload or {}
        if isinstance(base.get("type"), str):  # Responses API stream
            return (b"event: response.incomplete\n" + b"data: " + orjson.dumps(
                {"type": "response.incomplete", "response": {"status": "incomplete",
                 "incomplete_details": {"reason": "content_filter"}}}) + b"\n\n")
        indices = sorted({k[1] for k in self._texts if k[0] in ("content", "field", "text")} or {0})
        obj = "text_completion" if any(k[0] == "text" for k in self._texts) else "chat.completion.chunk"
        out = []
        for idx in indices:
            choice: dict[str, Any] = {"index": idx, "finish_reason": "content_filter"}
            if obj == "chat.completion.chunk":
                choice["delta"] = {}
            else:
                choice["text"] = ""
            out.append(encode({"id": base.get("id", "chatcmpl-firewall"), "object": obj,
                               "created": base.get("created", 0), "model": base.get("model", ""),
                               "choices": [choice]}))
        return b"".join(out) + DONE
