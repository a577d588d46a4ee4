"""Finds the firewall's canary in an answer, however the model dressed it up.

The canary (`cnry-<16 hex>`) is planted in the system prompt; a model that repeats it has leaked
its instructions. A verbatim check misses a model told to "spell it out", encode or reverse it,
so one RE2 pattern matches the canary's random part in every form listed below, in one linear
pass with no decoding step:

- as written, in any letter case, full-width or with look-alike letters, with a run of up to
  eight separators (spaces, dashes, dots, quotes, commas, brackets, table bars, zero-width
  characters, soft hyphens: `['7', '3', ...]`, `| 7 | 3 |`, `7 - - 3`) or one escaped one between
  its characters; or each character as `%XX`, `&#NN;`, `&#xXX;`, `\\u00XX` or `\\xXX`;
- reversed, the same way;
- in ROT13 (letters rotated, digits kept), forwards and reversed, spelled out the same way;
- each character as its NATO word ("alfa", "bravo"...) or digit name ("four", "niner"), or as
  itself, one to three separators (spaces, dashes, commas, newlines) apart, forwards or reversed;
- hex (upper or lower case digits; `%`, `\\x`, `0x`, `:`, spaces or a list's quotes and commas
  between the bytes); each character as its decimal code (`55 51 50`, `[55, 51, 50]`);
- base64 (standard and URL-safe, at each of the 3 byte alignments) and base32 (each of the 5);
  encodings of the upper-cased canary too.

The random part alone is matched (with or without the `cnry-` prefix): 64 random bits make an
accidental match in ordinary text negligible. So is either half of it on its own ("the first half
is 7324cc5b"), spelled out, reversed, as codes or in hex (`_half_forms`): 32 random bits, about
one false match in four billion positions of hex text, none in ordinary prose
(`benchmarks/canary_false_positives.py`). `anchor` is where such a match can start, for the
stream guard's hold-back; every form is shorter than the guard's window.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2

from llm_firewall.detect.normalize import CONFUSABLES
from llm_firewall.detect.re2raw import found, iter_spans
from llm_firewall.detect.rules import pattern_width
from llm_firewall.redact import MASK

ANCHOR_UNITS = 4  # characters of a form that mark where it may start
HALF_MIN = 8  # characters each half needs to be matched on its own

# Between two characters of a spelled-out canary: up to eight non-alphanumerics (a list's
# `', '`, a table's ` | `, an indented JSON list's `",\n    "`), or one escaped separator (`%20`,
# `&nbsp;`, `&#160;`, `\u200b`). Bounded: the stream guard's window is widened to the widest
# form (see `CanaryMatcher.width`), and every character of it is held back that long.
_SEP = r"(?:[^0-9A-Za-z]{1,8}|%[0-9A-Fa-f]{2}|&[A-Za-z]{2,4};|&#[0-9]{2,3};|\\u[0-9A-Fa-f]{4})?"
_HEX_SEP = r"[^0-9A-Za-z]{0,6}(?:0?[xX])?"  # " ", ":", "%", "\\x", ", 0x", "', '0x" between bytes
_CODE_SEP = r"[^0-9A-Za-z]{1,6}"  # between decimal character codes
_LOOKALIKES: dict[str, set[str]] = {}
for _other, _ascii in CONFUSABLES.items():
    _LOOKALIKES.setdefault(_ascii.lower(), set()).add(_other)


def _char(ch: str) -> str:
    """One character of the canary in either case, full-width or as a look-alike letter."""
    forms = {ch.lower(), ch.upper(), chr(ord(ch.lower()) + 0xFEE0), chr(ord(ch.upper()) + 0xFEE0)}
    forms |= _LOOKALIKES.get(ch.lower(), set())
    return "[" + "".join(sorted(re2.escape(f) for f in forms)) + "]"


def _escaped(ch: str) -> str:
    """One character as written or escaped: `%XX`, `&#NN;`, `&#xXX;`, `\\u00XX`, `\\xXX`."""
    codes = dict.fromkeys((ord(ch.lower()), ord(ch.upper())))
    escapes = [e for c in codes for e in (f"%{c:02x}", f"&#{c};", f"&#x{c:x};", f"\\\\u00{c:02x}",
                                          f"\\\\x{c:02x}")]
    return f"(?:{_char(ch)}|(?i:{'|'.join(escapes)}))"


def _spelled(chars: str) -> list[str]:
    """Spelled out with separators, or each character escaped (then at most one separator)."""
    return [_SEP.join(_char(c) for c in chars), "[^0-9A-Za-z]?".join(_escaped(c) for c in chars)]


# Words a model spells characters with: the NATO alphabet (both spellings) and digit names.
_WORDS: dict[str, tuple[str, ...]] = {
    "a": ("alfa", "alpha"), "b": ("bravo",), "c": ("charlie",), "d": ("delta",), "e": ("echo",),
    "f": ("foxtrot",), "g": ("golf",), "h": ("hotel",), "i": ("india",), "j": ("juliett", "juliet"),
    "k": ("kilo",), "l": ("lima",), "m": ("mike",), "n": ("november",), "o": ("oscar",), "p": ("papa",),
    "q": ("quebec",), "r": ("romeo",), "s": ("sierra",), "t": ("tango",), "u": ("uniform",),
    "v": ("victor",), "w": ("whiskey", "whisky"), "x": ("x-ray", "xray"), "y": ("yankee",), "z": ("zulu",),
    "0": ("zero",), "1": ("one",), "2": ("two",), "3": ("three",), "4": ("four",), "5": ("five",),
    "6": ("six",), "7": ("seven",), "8": ("eight",), "9": ("nine", "niner"),
}


def _worded(chars: str) -> str:
    """Each character as its NATO or digit word (or as itself), one to three separators apart."""
    return "(?i:" + "[^0-9A-Za-z]{1,3}".join(
        "(?:" + "|".join(re2.escape(w) for w in (*_WORDS[c.lower()], c.lower())) + ")" for c in chars) + ")"


def _decimal(chars: str) -> str:
    """Each character as its decimal code (either letter case), listed: `55 51 50`, `[55, 51]`."""
    return _CODE_SEP.join("(?:" + "|".join(dict.fromkeys((str(ord(c.lower())), str(ord(c.upper()))))) + ")"
                          for c in chars)


def _rot13(text: str) -> str:
    return text.translate(_ROT13)


_ROT13 = str.maketrans("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                       "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM")


def _hex(data: bytes) -> str:
    pairs = [f"(?i:{b:02x})" for b in data]
    return _HEX_SEP.join(pairs)


def _cores(data: bytes, block: int, bits: int, encode: Any) -> list[str]:
    """The part of `encode(data)` that is the same wherever `data` starts in a longer input:
    one per alignment of `data` in the encoder's `block`-byte groups (`bits` per output char)."""
    out = []
    for shift in range(block):
        encoded = encode(bytes(shift) + data + bytes(block)).decode("ascii")
        first = -(-8 * shift // bits)
        last = (8 * (shift + len(data))) // bits
        out.append(encoded[first:last])
    return out


def _b64(core: str) -> str:
    return r"\s{0,2}".join({"+": "[+-]", "/": "[/_]"}.get(c, c) for c in core)


def _b32(core: str) -> str:
    return "(?i:" + r"\s{0,2}".join(core) + ")"


def _forms(secret: str, units: int | None = None) -> list[str]:
    """Every form's pattern, or with `units` only each form's first `units` characters."""
    cut = (lambda s: s[:units]) if units else (lambda s: s)
    forms = _spelled(cut(secret)) + _spelled(cut(secret[::-1]))
    forms += _spelled(cut(_rot13(secret))) + _spelled(cut(_rot13(secret)[::-1]))
    forms += [_worded(cut(secret)), _worded(cut(secret[::-1])), _decimal(cut(secret))]
    for variant in dict.fromkeys((secret.lower(), secret.upper())):
        data = variant.encode("ascii")
        forms.append(_hex(data[:(units + 1) // 2] if units else data))
        forms += [_b64(cut(c)) for c in _cores(data, 3, 6, base64.b64encode)]
        forms += [_b32(cut(c)) for c in _cores(data, 5, 5, base64.b32encode)]
    return list(dict.fromkeys(forms))


def _half_forms(half: str, units: int | None = None) -> list[str]:
    """A half's forms: spelled out (or escaped) forwards and reversed, as character codes and in
    hex. Its ROT13, NATO words and base64/base32 are left out: each form added to the stream's
    anchor makes every held character cost more to check."""
    cut = (lambda s: s[:units]) if units else (lambda s: s)
    forms = _spelled(cut(half)) + _spelled(cut(half[::-1])) + [_decimal(cut(half))]
    for variant in dict.fromkeys((half.lower(), half.upper())):
        data = variant.encode("ascii")
        forms.append(_hex(data[:(units + 1) // 2] if units else data))
    return forms


@dataclass(frozen=True)
class CanaryMatcher:
    """The compiled forms of one canary; `anchor`/`anchor_width` feed the stream hold-back."""

    pattern: Any
    anchor: str
    anchor_width: int
    width: int  # most characters one form spans: the stream window must be at least this

    def found(self, text: str) -> bool:
        return found(self.pattern, text)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the canary stands in `text`, in any of its forms."""
        return list(iter_spans(self.pattern, text))

    def mask(self, text: str) -> str:
        """`text` with every form of the canary masked."""
        spans = self.spans(text)
        if not spans:
            return text
        out, pos = [], 0
        for start, end in spans:
            out += [text[pos:start], MASK]
            pos = end
        return "".join(out) + text[pos:]


@lru_cache(maxsize=8)
def canary_matcher(canary: str) -> CanaryMatcher:
    """The matcher for `canary`: its random part after the last dash, in every form."""
    secret = canary.rsplit("-", 1)[-1]
    if len(secret) < 8 or not secret.isascii() or not secret.isalnum():
        raise ValueError("a canary needs at least 8 random ASCII letters or digits after its last dash")
    opts = re2.Options()
    opts.max_mem = 64 << 20
    # The whole first (a mask covers it in one span), then each half when it is long enough to be
    # random on its own (HALF_MIN characters: 32 bits for hex).
    forms, anchors = _forms(secret), _forms(secret, ANCHOR_UNITS)
    if len(secret) >= 2 * HALF_MIN:
        for half in (secret[:len(secret) // 2], secret[len(secret) // 2:]):
            forms += _half_forms(half)
            anchors += _half_forms(half, ANCHOR_UNITS)
    full = "|".join(dict.fromkeys(forms))
    anchor = "|".join(dict.fromkeys(anchors))
    return CanaryMatcher(re2.compile(full, opts), anchor, pattern_width(anchor), pattern_width(full))


def canary_found(text: str, canary: str) -> bool:
    """Whether `text` holds `canary` in any of the forms this module knows."""
    return canary_matcher(canary).found(text)
