"""The canary is found however an answer dresses it up, and never in text that does not hold it."""

from __future__ import annotations

import base64
import codecs
import string

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_firewall.config import Settings
from llm_firewall.detect.canary import MASK, canary_found, canary_matcher
from llm_firewall.detect.partial import prefix_pattern

CANARIES = st.binary(min_size=8, max_size=8).map(lambda b: f"cnry-{b.hex()}")
SEPARATORS = [" ", "-", ".", "_", "\u200b", "\u200c", "\u2060", "\u00ad", "\ufeff", "·", "\n"]
ESCAPED_SEPARATORS = ["%20", "&nbsp;", "&#173;", "\\u200b"]


@st.composite
def spelled(draw: st.DrawFn, text: str) -> str:
    """`text` with 0-8 separators (or one escaped) between its characters, letters in either case."""
    out = []
    for ch in text:
        out.append(ch.upper() if draw(st.booleans()) else ch)
        out.append(draw(st.one_of(st.lists(st.sampled_from(SEPARATORS), max_size=8).map("".join),
                                  st.sampled_from(ESCAPED_SEPARATORS))))
    return "".join(out[:-1])


@st.composite
def dressed(draw: st.DrawFn, canary: str, halves: bool = True) -> str:
    """One of the transformations a leaking model might apply (to the canary or, with `halves`,
    to either half of its random part)."""
    word = draw(st.sampled_from([canary, canary[5:], canary.upper()]))  # with or without its prefix
    data = word.encode()
    pad = draw(st.binary(max_size=4))  # the canary at any byte offset of the encoded input
    kinds = ["spelled", "reversed", "hex", "hex_spaced", "percent", "fullwidth", "entities", "escapes", "lines",
             "list", "codes", "table"]  # the forms a half is found in too
    if halves:
        kinds += ["base64", "base64url", "base32", "rot13", "rot13_reversed", "words", "words_reversed", "half"]
    kind = draw(st.sampled_from(kinds))
    if kind == "half":  # either half on its own, spelled out, listed or in hex
        half = canary[5:13] if draw(st.booleans()) else canary[13:]
        return draw(dressed("cnry-" + half, halves=False))
    if kind == "list":  # a Python or JSON list of its characters, flat or one a line
        quote = draw(st.sampled_from(["'", '"']))
        sep = draw(st.sampled_from([", ", ",", ",\n    ", ",\n  "]))
        return "[" + sep.join(f"{quote}{c}{quote}" for c in word) + "]"
    if kind == "codes":  # decimal character codes, listed
        return draw(st.sampled_from([" ", ", ", ",", "-", ",\n  "])).join(str(ord(c)) for c in word)
    if kind == "table":  # one character a markdown-table cell, in a row or one a row
        return draw(st.sampled_from(["|", " | ", " |\n| "])).join(word).join(["| ", " |"])
    if kind == "spelled":
        return draw(spelled(word))
    if kind == "reversed":
        return draw(spelled(word[::-1]))
    if kind == "base64":
        return base64.b64encode(pad + data).decode()
    if kind == "base64url":
        return base64.urlsafe_b64encode(pad + data).decode().rstrip("=")
    if kind == "hex":
        encoded = (pad + data).hex()
        return encoded.upper() if draw(st.booleans()) else encoded
    if kind == "hex_spaced":
        sep = draw(st.sampled_from([" ", ":", "\\x", " 0x", "-"]))
        return sep.join(f"{b:02x}" for b in data)
    if kind == "percent":
        return "".join(f"%{b:02X}" for b in data)
    if kind == "base32":
        encoded = base64.b32encode(pad + data).decode()
        return encoded.lower() if draw(st.booleans()) else encoded
    if kind in ("rot13", "rot13_reversed"):
        rotated = codecs.encode(word[5:] if word.lower().startswith("cnry-") else word, "rot13")
        return draw(spelled(rotated if kind == "rot13" else rotated[::-1]))
    if kind in ("words", "words_reversed"):
        chars = word[5:] if word.lower().startswith("cnry-") else word
        sep = draw(st.sampled_from([" ", "-", ", ", "\n", " - "]))
        return sep.join(draw(st.sampled_from(WORDS[c.lower()])) for c in (chars if kind == "words" else chars[::-1]))
    if kind == "lines":  # one character a line, as a list
        return "\n".join(draw(st.sampled_from(["", "- ", "* "])) + c for c in word)
    if kind == "fullwidth":
        return "".join(chr(ord(c) + 0xFEE0) for c in word)
    if kind == "entities":
        return "".join(f"&#{ord(c)};" for c in word)
    return "".join(f"\\u{ord(c):04x}" for c in word)


WORDS = {c: [w, w.upper(), w.capitalize(), c] for c, w in zip("0123456789abcdef", (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "niner", "alfa", "bravo", "charlie",
    "delta", "echo", "foxtrot"), strict=True)}
PROSE = st.text(string.ascii_letters + string.digits + " .,:;!?'\"()-\n", max_size=120)


@settings(max_examples=200, deadline=None)
@given(st.data(), CANARIES, PROSE, PROSE)
def test_every_dressed_form_is_found_anywhere_in_an_answer(data: st.DataObject, canary: str, before: str,
                                                           after: str) -> None:
    form = data.draw(dressed(canary))
    text = f"{before} {form} {after}"
    assert canary_found(text, canary), form
    masked = canary_matcher(canary).mask(text)
    assert MASK in masked and not canary_found(masked, canary)


@settings(max_examples=200, deadline=None)
@given(st.data(), CANARIES, CANARIES, PROSE)
def test_text_without_the_canary_is_left_alone(data: st.DataObject, canary: str, other: str,
                                               prose: str) -> None:
    """Random text, and another canary dressed the same ways, never match (64 random bits)."""
    if other == canary:
        return
    assert not canary_found(prose, canary)
    assert not canary_found(f"{prose} {data.draw(dressed(other))} {prose}", canary)


def test_every_form_fits_in_a_bounded_stream_window() -> None:
    """A stream is checked a window at a time, which the relay widens to the widest form (a
    longer one could leave half-released): that stays a small multiple of the default window."""
    assert Settings().stream_window_chars <= canary_matcher("cnry-0123456789abcdef").width <= 160


@settings(max_examples=40, deadline=None)  # each canary's prefix pattern takes ~0.1 s to build
@given(st.data(), CANARIES)
def test_every_match_starts_with_an_anchor_for_the_stream_hold_back(data: st.DataObject, canary: str) -> None:
    """The stream guard releases text before the first anchor: each form must begin with one,
    and an unfinished form at the end of the text so far must still look like an anchor's start."""
    form = data.draw(dressed(canary))
    matcher = canary_matcher(canary)
    anchor = re2.compile(matcher.anchor)
    start = next(matcher.pattern.finditer(form)).start()
    head = anchor.search(form[start:])
    assert head.start() == 0
    partial = re2.compile(f"(?:{prefix_pattern(matcher.anchor)})\\z")
    for cut in range(1, head.end()):
        assert partial.search(form[start:start + cut]).start() == 0
