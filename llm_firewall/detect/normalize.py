"""Turns one text into the few views an attacker's obfuscation would hide behind.

Rules are written once against plain text; this module makes zero-width characters, look-alike
letters, leetspeak, reversed text, hidden Unicode tag characters and common encodings collapse
onto that plain text, and records which transforms were needed so that a finding can say how it
was revealed. Pure: no I/O, no clock, no aiohttp.

Cost model: a plain ASCII text with nothing decodable yields one view after one scan. The engine
folds the trigger patterns below into its single rule-set pass and hands the hits in as `hints`,
so the common case costs nothing here beyond the base view.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import fnmatch
import functools
import html
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import re2

from llm_firewall.detect.re2raw import byte_spans, search_bytes


@dataclass(frozen=True, slots=True)
class View:
    """One rendering of a text; `transforms` names the steps that produced it ("" = plain)."""

    text: str
    transforms: tuple[str, ...]


# --- invisible characters ----------------------------------------------------------------------

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\u034f"
_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"
_INVISIBLE_RE = re.compile(
    f"[{_ZERO_WIDTH}{_BIDI}\ufe00-\ufe0f\U000e0100-\U000e01ef\U000e0000-\U000e007f]"
)
# An invisible character inside a word is obfuscation; after an emoji it is ordinary emoji syntax.
_ZW_IN_WORD_RE = re.compile(f"\\w[{_ZERO_WIDTH}\ufe00-\ufe0f]+\\w")
_BIDI_RE = re.compile(f"[{_BIDI}]")
_TAG_RUN_RE = re.compile("\U0001f3f4?[\U000e0000-\U000e007f]+")
# One native pass says whether any of the above is present at all (Python's `re` needed ~30 ms
# over a 1 MiB text for the three searches and the substitution that usually find nothing).
_INVISIBLE_RE2 = re2.compile(
    f"[{_ZERO_WIDTH}{_BIDI}\ufe00-\ufe0f\U000e0100-\U000e01ef\U000e0000-\U000e007f]")
_TAG_CHAR_RE = re.compile("[\U000e0000-\U000e007f]")

# --- look-alike letters (a small skeleton table: Cyrillic, Greek, Armenian, small capitals) ----

_CONFUSABLES = {
    # Cyrillic lower / upper
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "ӏ": "l", "һ": "h", "ɡ": "g", "ь": "b", "ѵ": "v", "ү": "y",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W",
    "Ӏ": "l",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ϲ": "c", "γ": "y", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H",
    "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Armenian and Latin extensions
    "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ո": "n", "ı": "i", "ȷ": "j", "ℓ": "l",
    # small capitals
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j",
    "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t",
    "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
}
CONFUSABLES = _CONFUSABLES  # look-alike → ASCII letter, also read by the canary matcher
_SKELETON_TABLE = str.maketrans(_CONFUSABLES)
_CONFUSABLE_RUN_RE = re.compile("[" + "".join(_CONFUSABLES) + "]+")
_FEW_RUNS = 1000  # above this many runs of confusables, one `translate` of the text is cheaper
# One match per word (letter run), found by a native pass rather than a Python test per word
# (~240 ms a MiB): it starts at the word's first letter, and its group is the word's first Latin
# letter (one whose lower case is in a-z: A-Z, a-z, U+0130 and the Kelvin sign), or empty.
_WORD_LATIN_RE = re.compile(r"(?<![^\W\d_])(?:[^\W\d_]*?([A-Za-z\u0130\u212a])|[^\W\d_])")
# A whole word that mixes in an ASCII letter, from its first letter (the lookbehind keeps each
# attempt inside a word O(1), so a long non-Latin run is walked once).
_MIXED_WORD_RE = re.compile(r"(?<![^\W\d_])[^\W\d_]*?[A-Za-z][^\W\d_]*")

# --- leetspeak ---------------------------------------------------------------------------------

_LEET_TABLE = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                             "@": "a", "$": "s", "!": "i", "|": "l", "8": "b", "9": "g"})
_LEET_MAX_TOKEN = 20  # longer runs are identifiers, hashes or base64, not leetspeak words
_LEET_BYTES = bytes.maketrans(b"0134578@$!|9", b"oieastbasilg")
_LEET_RUN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@$!|")
_LEET_RUN_RE = re.compile(rb"[A-Za-z0-9@$!|]+")
# Where a letter touches a leet character: the only places a folded view can differ.
_LEET_SPOT_RE2 = re2.compile(r"[A-Za-z][0134578@$!|9]|[0134578@$!|9][A-Za-z]")
_DOMAIN_AFTER_RE = re.compile(rb"\.[A-Za-z]")

# --- triggers: cheap evidence that a derived view could differ from the base view -------------
# RE2 syntax; the engine adds these to its rule set so one pass finds rules and triggers alike.

_REVERSED_WORDS = ("erongi", "dragersid", "tegrof", "snoitcurtsni", "suoiverp", "tpmorp",
                   "metsys", "drowssap", "laever", "terces", "selur", "edirrevo", "edom")
_ROT13_WORDS = ("vtaber", "qvfertneq", "sbetrg", "vafgehpgvbaf", "cerivbhf", "cebzcg",
                "flfgrz", "cnffjbeq", "erirny", "frperg", "ehyrf", "bireevqr", "ebg13", "ebg-13")

TRIGGER_PATTERNS: dict[str, str] = {
    "base64": r"[A-Za-z0-9+/_-]{16,}",
    "base32": r"(?-i:[A-Z2-7]{16,})",
    "hex": r"[0-9A-Fa-f]{16,}|\\x[0-9A-Fa-f]{2}|(?:[0-9A-Fa-f]{2}[ :]){7}[0-9A-Fa-f]{2}",
    "url": r"%[0-9A-Fa-f]{2}|%u[0-9A-Fa-f]{4}",
    "html_entities": r"&(?:#[xX]?[0-9A-Fa-f]{1,6};?|[A-Za-z]{2,10};)",
    "js_escape": r"\\u[0-9A-Fa-f]{4}",
    "reversed": r"(?i)\b(?:" + "|".join(_REVERSED_WORDS) + r")\b",
    "rot13": r"(?i)\b(?:" + "|".join(_ROT13_WORDS) + r"|rot-?13)\b",
    # An "@" between letters counts unless a domain follows (an e-mail address is not leet).
    "leetspeak": r"(?i)[a-z][013457$][a-z]|[a-z]@[a-z]+(?:[^a-z.]|\.[^a-z]|\.?$)"
                 r"|\b[0134][a-z]{2}|(?:^|[^a-z0-9@$])[@$][a-z]{2}|[a-z]{2}[013457]\b",
    "whitespace": r"\s{12,}",
    # Bad-character noise: control characters (backspace) or pipes inside words, or a word of
    # five letters or more spelt with a separator after every letter (I-g-n-o-r-e); the view
    # then also joins the shorter spelt-out words around it (a-l-l).
    # Instructions spelt in Morse (dots and dashes, "/" between words), braille letters or
    # an Ascii85 block (<~ ... ~>): decoded so every rule reads the plain instruction.
    "morse": r"(?:[.-]{1,6}(?: {1,3}/)? {1,3}){12,}[.-]{1,6}",
    "braille": r"[\x{2801}-\x{28ff}]{3,}",
    "ascii85": r"<~[!-u\s]{10,}~>",
    "noise": r"(?i)[a-z][|\x00-\x08\x0e-\x1f\x7f]{1,3}[a-z]|(?i)\b[a-z](?:[.*_-][a-z]){4,}\b",
    # A word of five letters or more spelt with a single space after every letter, the words
    # set apart by several spaces (I g n o r e   a l l): the view joins each such run.
    "spaced": r"(?i)(?:^|[^a-z][ \x{a0}])[a-z](?:[ \x{a0}][a-z]){4,}(?:[ \x{a0}]{2}|\s*$)",
    # Every character, spaces included, followed by one separator (".".join(text): i.g.n.o.r.e. .a.l.l),
    # or by two (i..g..n, i  g  n): the view keeps every other character of such a run.
    "separated": r"(?i)(?:[a-z ](?:[._*|/,\t\n\x{a0}-]|\.\.|  )){6}[a-z ]",
    # Shell obfuscation: quotes or a backslash inside a word (r''m, r\m), $IFS for a space,
    # long options (--recursive), short options apart (-r -f), a glob for a program's path
    # (/bin/r?), a payload piped through `base64 -d`.
    "shell": r"(?i)\w(?:''|\x22\x22|\\)\w|\w['\x22]\w+['\x22]|['\x22]-\w{1,6}['\x22]|\$\{?IFS\b|\s--(?:recursive|force|no-preserve-root)\b"  # noqa: E501
             r"|\s-[a-z]{1,3}\s+-[a-z]{1,3}\s+/|/[\w?*\[\]/.-]*[?*\[][\w?*\[\]/.-]*(?:\s|$)|\bbase64\s+(?:-d|-D|--decode)\b"
             # a word opening with a quoted piece ('r'm), an empty substitution (r$()m, r``m),
             # characters spelt as escapes ($(printf "\x72\x6d"), $'\x72\x6d')
             r"|(?:^|[\s;&|(:])(?:'\w{1,4}'|\x22\w{1,4}\x22)\w|\$\(\s*\)|\w\x60\x60\w|\$\(\s*(?:printf|echo\s+-e)\s|\$'\\",
}
_DECODERS_ORDER = ("url", "html_entities", "js_escape", "base64", "base32", "hex", "morse",
                   "braille", "ascii85")


def _trigger_set() -> tuple[re2.Set, tuple[str, ...]]:
    opts = re2.Options()
    opts.max_mem = 8 << 20
    s = re2.Set.SearchSet(opts)
    names = tuple(TRIGGER_PATTERNS)
    for name in names:
        s.Add(TRIGGER_PATTERNS[name])
    s.Compile()
    return s, names


_TRIGGERS, _TRIGGER_NAMES = _trigger_set()


def find_triggers(text: str) -> frozenset[str]:
    """Names of the derived views worth computing for `text` (one linear-time pass)."""
    hits = _TRIGGERS.Match(text)
    return frozenset(_TRIGGER_NAMES[i] for i in hits) if hits else frozenset()


# --- base view ---------------------------------------------------------------------------------


def _collapse(text: str) -> str:
    return " ".join(text.split())


def base_view(text: str) -> View:
    r"""The cheaply normalised text: NFKC, invisibles removed, whitespace collapsed.

    A plain ASCII text is returned as written: rules tolerate whitespace (\s+, and phrases
    allow up to 16 whitespace characters between words), and re-joining every word costs more
    than the whole rule pass. A run long enough to matter triggers a collapsed derived view.
    """
    if text.isascii():
        return View(text, ())
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep the rest scannable
        data = text.encode("utf-8", "replace")
        text = data.decode("utf-8")
    transforms: list[str] = []
    stripped = text
    if search_bytes(_INVISIBLE_RE2, data) is not None:
        if _ZW_IN_WORD_RE.search(text):
            transforms.append("zero_width")
        if _BIDI_RE.search(text):
            transforms.append("bidi")
        stripped = _INVISIBLE_RE.sub("", text)
    folded = unicodedata.normalize("NFKC", stripped)
    if folded != stripped:
        transforms.append("nfkc")
    return View(_collapse(folded), tuple(transforms))


def dropped_count(text: str) -> int:
    """How many characters of `text` the base view drops (invisible ones): a window of answer
    text that the rules read as N characters spans N plus these in the raw text."""
    return 0 if text.isascii() else len(_INVISIBLE_RE.findall(text))


# --- derived views -----------------------------------------------------------------------------


def _mostly_printable(text: str) -> bool:
    if len(text) < 4:
        return False
    good = sum(1 for ch in text if ch.isprintable() or ch in "\n\r\t")
    if good < 0.95 * len(text):
        return False
    # Mostly text, or a short ASCII payload such as a path ("../../etc/passwd").
    letters = sum(1 for ch in text if ch.isalpha())
    return letters >= 0.4 * len(text) or (text.isascii() and letters >= 3)


def _utf8(data: bytes) -> str | None:
    try:
        out = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return out if _mostly_printable(out) else None


# The encoded-run finders are RE2 over the UTF-8 bytes (every pattern is ASCII-only): Python's
# `re` took ~15 ms to walk a 1 MiB text for base64 runs alone.
_B64_RE = re2.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_B32_RE = re2.compile(r"[A-Z2-7]{16,}=*")
_HEX_RE = re2.compile(r"(?:[0-9A-Fa-f]{2}){8,}")
_HEX_SPACED_RE = re2.compile(r"(?:[0-9A-Fa-f]{2}[ :]){7,}[0-9A-Fa-f]{2}")
_HEX_ESC_RE = re2.compile(r"(?:\\x[0-9A-Fa-f]{2}){4,}")
_PCT_U_RE = re.compile(r"%u([0-9A-Fa-f]{4})")
_JS_ESC_RE = re.compile(r"\\u([0-9A-Fa-f]{4})")


def _ascii_runs(regex: Any, text: str) -> Iterator[str]:
    """Matches of an ASCII-only RE2 pattern in `text`: one native pass over its UTF-8 bytes."""
    data = text.encode("utf-8", "surrogatepass")
    for start, stop in byte_spans(regex, data):
        yield data[start:stop].decode("ascii")


def _decoded_runs(regex: Any, text: str, block: int, decode: Callable[[str], bytes],
                  skip: Callable[[str], bool] = lambda token: False) -> str | None:
    """Every run of `regex` in `text` that decodes (padding restored to `block`) to UTF-8 text."""
    parts = []
    for token in _ascii_runs(regex, text):
        if skip(token):
            continue
        body = token.rstrip("=")
        body += "=" * (-len(body) % block)
        try:
            raw = decode(body)
        except (binascii.Error, ValueError):
            continue
        decoded = _utf8(raw)
        if decoded:
            parts.append(decoded)
    return "\n".join(parts) or None


def _b64(body: str) -> bytes:
    if "-" in body or "_" in body:
        return base64.urlsafe_b64decode(body)
    return base64.b64decode(body, validate=True)


def _plain_word(token: str) -> bool:
    """Plain words and hex strings are not base64 worth trying."""
    return token.isalpha() and (token.islower() or token.isupper())


def _decode_base64(text: str) -> str | None:
    return _decoded_runs(_B64_RE, text, 4, _b64, _plain_word)


def _decode_base32(text: str) -> str | None:
    return _decoded_runs(_B32_RE, text, 8, base64.b32decode)


def _decode_hex(text: str) -> str | None:
    parts = []
    for regex, clean in ((_HEX_RE, None), (_HEX_SPACED_RE, " :"), (_HEX_ESC_RE, "\\x")):
        for token in _ascii_runs(regex, text):
            if clean == "\\x":
                token = token.replace("\\x", "")
            elif clean:
                token = token.replace(" ", "").replace(":", "")
            try:
                decoded = _utf8(bytes.fromhex(token))
            except ValueError:
                continue
            if decoded:
                parts.append(decoded)
    return "\n".join(parts) or None


def _overlong_step(data: bytes, i: int) -> tuple[str, int]:
    """Decode the one sequence at `data[i]` arithmetically, overlong forms included."""
    b = data[i]
    n = len(data)
    size = 2 if 0xC0 <= b < 0xE0 else 3 if b < 0xF0 else 4 if b < 0xF8 else \
        5 if b < 0xFC else 6 if b < 0xFE else 0
    if b < 0x80 or size == 0 or i + size > n or \
            any(c & 0xC0 != 0x80 for c in data[i + 1:i + size]):
        return (chr(b) if b < 0x80 else "\ufffd"), i + 1
    cp = b & (0x7F >> size)
    for c in data[i + 1:i + size]:
        cp = (cp << 6) | (c & 0x3F)
    return (chr(cp) if cp < 0x110000 else "\ufffd"), i + size


def _overlong_errors(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return _overlong_step(exc.object, exc.start)


codecs.register_error("llm_firewall.overlong", _overlong_errors)


def _lenient_utf8(data: bytes) -> str:
    """UTF-8 that also accepts overlong forms (%c0%ae for '.'), as some servers once did.

    The codec decodes natively; Python runs only at the invalid sequences (a per-byte Python
    loop over a whole decoded text cost ~0.5 ms per 2 KB).
    """
    return data.decode("utf-8", "llm_firewall.overlong")


def _decode_url(text: str) -> str | None:
    out = _PCT_U_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    out = _lenient_utf8(unquote_to_bytes(out))
    return out if out != text else None


def _decode_html(text: str) -> str | None:
    out = html.unescape(text)
    return out if out != text else None


def _decode_js(text: str) -> str | None:
    out = _JS_ESC_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return out if out != text else None


_MORSE = dict(zip(
    ".- -... -.-. -.. . ..-. --. .... .. .--- -.- .-.. -- -. --- .--. --.- .-. ... - ..- ...- .-- "
    "-..- -.-- --.. ----- .---- ..--- ...-- ....- ..... -.... --... ---.. ----. .-.-.- --..-- ..--.."
    .split(), "abcdefghijklmnopqrstuvwxyz0123456789.,?", strict=True))
_MORSE_RUN_RE = re.compile(r"(?:[.-]{1,6}(?: {1,3}/)? {1,3}){3,}[.-]{1,6}")
_BRAILLE = dict(zip("\u2801\u2803\u2809\u2819\u2811\u280b\u281b\u2813\u280a\u281a\u2805\u2807"
                    "\u280d\u281d\u2815\u280f\u281f\u2817\u280e\u281e\u2825\u2827\u283a\u282d"
                    "\u283d\u2835", "abcdefghijklmnopqrstuvwxyz", strict=True))
_ASCII85_RE = re.compile(r"<~([!-u\s]{10,}?)~>")


def _morse_run(m: re.Match[str]) -> str:
    words = re.split(r"\s*/\s*| {3,}", m.group(0))
    return " ".join("".join(_MORSE.get(code, "?") for code in w.split()) for w in words)


def _decode_morse(text: str) -> str | None:
    out = _MORSE_RUN_RE.sub(_morse_run, text)
    return out if out != text else None


def _decode_braille(text: str) -> str | None:
    out = "".join(_BRAILLE.get(c, c) for c in text)
    return out if out != text else None


def _decode_ascii85(text: str) -> str | None:
    def run(m: re.Match[str]) -> str:
        try:
            return base64.a85decode(m.group(0), adobe=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return m.group(0)
    out = _ASCII85_RE.sub(run, text)
    return out if out != text else None


_DECODERS = {
    "url": _decode_url,
    "html_entities": _decode_html,
    "js_escape": _decode_js,
    "base64": _decode_base64,
    "base32": _decode_base32,
    "hex": _decode_hex,
    "morse": _decode_morse,
    "braille": _decode_braille,
    "ascii85": _decode_ascii85,
}


def _skeleton(text: str) -> str | None:
    if not _CONFUSABLE_RUN_RE.search(text):
        return None
    latin = _WORD_LATIN_RE.findall(text)  # per word: its first Latin letter, or ""
    if latin and len(latin) - latin.count("") >= 0.6 * len(latin):
        # `translate` looks up every character (~50 ms a MiB); usually only a few runs change.
        out, runs = _CONFUSABLE_RUN_RE.subn(_fold_run, text, count=_FEW_RUNS)
        if runs == _FEW_RUNS:
            out = text.translate(_SKELETON_TABLE)
    else:  # a non-Latin text stays as written; only words that mix in ASCII letters are folded
        out = _MIXED_WORD_RE.sub(_fold_run, text)
    return out if out != text else None


def _fold_run(m: re.Match[str]) -> str:
    return m.group(0).translate(_SKELETON_TABLE)


def _leet(text: str) -> str | None:
    """Leetspeak folded, word by word, only where a letter touches a leet digit or symbol.

    Only the few tokens that mix letters with leet characters are visited, found by one native
    RE2 pass over the UTF-8 bytes (a per-word Python callback over the whole text cost ~0.7 µs
    a word). Not folded: numbers ("4421", "A-48213-77": no letter touches a leet character),
    e-mail addresses ("jane.doe@example.com" is an address, not "doeaexample"), random
    identifiers (long, or mixed case inside the word). Every character involved is ASCII, so
    working on bytes keeps multi-byte text intact.
    """
    data = text.encode("utf-8", "surrogatepass")
    pieces: list[bytes] = []
    pos = 0
    spot = search_bytes(_LEET_SPOT_RE2, data)
    while spot is not None:
        start = spot[0]
        floor = max(0, start - _LEET_MAX_TOKEN)
        while start > floor and data[start - 1] in _LEET_RUN_BYTES:
            start -= 1
        end = _LEET_RUN_RE.match(data, spot[0]).end()  # type: ignore[union-attr]
        word = data[start:end]
        if 2 <= len(word) <= _LEET_MAX_TOKEN and word[1:] == word[1:].lower() \
                and not (start > 0 and data[start - 1] in _LEET_RUN_BYTES) \
                and not (b"@" in word and _DOMAIN_AFTER_RE.match(data, end)):
            folded = word.translate(_LEET_BYTES)
            if folded != word:
                pieces.append(data[pos:start])
                pieces.append(folded)
                pos = end
        spot = search_bytes(_LEET_SPOT_RE2, data, end)
    if not pieces:
        return None
    pieces.append(data[pos:])
    return b"".join(pieces).decode("utf-8", "surrogatepass")


_NOISE_IN_WORD_RE = re.compile(r"(?<=[^\W\d_])[|\x00-\x08\x0e-\x1f\x7f]{1,3}(?=[^\W\d_])")
_SPELT_OUT_RE = re.compile(r"\b[^\W\d_](?:[.*_-][^\W\d_]){2,}\b")
_SPELT_SEP_RE = re.compile(r"[.*_-]")


def _denoise(text: str) -> str | None:
    """Noise characters inside words removed, and letter-by-letter spellings joined."""
    out = _NOISE_IN_WORD_RE.sub("", text)
    out = _SPELT_OUT_RE.sub(lambda m: _SPELT_SEP_RE.sub("", m.group(0)), out)
    return out if out != text else None


# Single letters set apart by one space, two or more in a run, between word gaps of 2+ spaces.
_SPACED_RUN_RE = re.compile(r"(?<![^\W\d_])[^\W\d_](?: [^\W\d_])+(?![^\W\d_])")


_SEPARATED_RES = tuple(
    (len(sep), re.compile(f"(?:.{re.escape(sep)}){{6,}}.", re.S))
    for sep in (".", "_", "*", "|", "/", ",", "\t", "\n", "\u00a0", "-", "..", "  "))
_LETTER_RE = re.compile(r"[^\W\d_]")


def _unseparate(text: str) -> str | None:
    """Runs of characters each followed by the same separator, read without the separators:
    "i.g.n.o.r.e. .a.l.l" reads "ignore all" (spaces were characters of the run, so they stay)."""
    out = text
    for width, pattern in _SEPARATED_RES:
        out = pattern.sub(functools.partial(_every_other, step=width + 1), out)
    return out if out != text else None


def _every_other(m: re.Match[str], step: int) -> str:
    run = m.group(0)
    return run[::step] if len(_LETTER_RE.findall(run)) >= 5 else run


def _join_spaced(text: str) -> str | None:
    """Letter-by-letter spellings with single spaces joined: "I g n o r e   a l l" reads
    "Ignore   all" (the word gaps stay, so the rules' phrases still see separate words)."""
    out = _SPACED_RUN_RE.sub(lambda m: m.group(0).replace(" ", ""), text)
    return out if out != text else None


# Combining marks stacked on letters ("zalgo" text): two or more in a row is never spelling; nor
# is a mark after each of four characters in a row (I̶g̶n̶o̶, a strikethrough
# or an accent on every letter), read on the text as sent, before NFKC composes some of them.
_MARKS = "\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_STACKED_MARKS_RE2 = re2.compile(f"[{_MARKS}]{{2,}}|(?:[^\\s{_MARKS}][{_MARKS}]){{4,}}")


def _strip_marks(text: str, sent: str | None = None) -> str | None:
    """Every mark (combining or enclosing) dropped after NFD, when marks are stacked as in
    zalgo text or follow every character; `sent` is the text as sent (default: `text`)."""
    probe = text if sent is None else sent
    if search_bytes(_STACKED_MARKS_RE2, probe.encode("utf-8", "surrogatepass")) is None:
        return None
    out = "".join(c for c in unicodedata.normalize("NFD", text)
                  if not unicodedata.category(c).startswith("M"))
    return out if out != text else None


def _hidden_tags(text: str) -> str | None:
    if not _TAG_CHAR_RE.search(text):
        return None
    parts = []
    for m in _TAG_RUN_RE.finditer(text):
        run = m.group(0)
        if run.startswith("\U0001f3f4"):  # subdivision flag such as England's: ordinary emoji
            continue
        decoded = "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)
        if decoded.strip():
            parts.append(decoded)
    return " ".join(parts) or None


# --- shell obfuscation ---------------------------------------------------------------------------
# What a shell would read: `r''m -r''f /`, `rm${IFS}-rf${IFS}/`, `r\m`, `rm --recursive --force /`,
# `/bin/r? -rf /` and `$(echo cm0gLXJmIC8= | base64 -d)` all read `rm -rf /` in this view, so
# the command rules, written once against plain commands, see through them.

# Each step finds its spots with one native RE2 pass over the UTF-8 bytes and rewrites only
# those (all ASCII, so multi-byte text stays intact): Python's `re` took ~0.6 s over a 1 MiB text
# with ordinary quotes and backslashes in it, this ~70 ms.
_B64_PIPE_RE2 = re2.compile(
    rb"""(?:\$\(|`)?\s*(?:echo|printf)\s+(?:-[ne]\s+)?['"]?([A-Za-z0-9+/=]{4,1000})['"]?\s*\|\s*(?:openssl\s+(?:enc\s+-)?)?base64\s+"""
    rb"""(?:-d|-D|--decode)\b\s*(?:\)|`)?""")
_IFS_RE2 = re2.compile(rb"\$\{IFS(?:[%#][^}\s]{0,8})?\}|\$IFS(?:\$\d)?")
# Substitutions a shell expands to nothing: `r$()m`, `r``m` (not a markdown fence: ```).
_EMPTY_SUBST_RE2 = re2.compile(rb"\$\(\s*\)|\w``\w")
# Characters spelt as escapes and printed in place: `$(printf "\x72\x6d")`, `$'\x72\x6d'`.
_ESCAPED_RE2 = re2.compile(
    rb"""\$\(\s*(?:printf|echo\s+-e|echo\s+-ne)\s+['"]?(?:\\x[0-9A-Fa-f]{2}|\\[0-7]{3}|[A-Za-z0-9 ./_-]){1,200}['"]?\s*\)"""  # noqa: E501
    rb"""|\$'(?:\\x[0-9A-Fa-f]{2}|\\[0-7]{3}|[A-Za-z0-9 ./_-]){1,200}'""")
_ESCAPE_RE = re.compile(rb"\\x([0-9A-Fa-f]{2})|\\([0-7]{3})")
# A word a shell would unquote, unescape or expand as a path glob.
_SHELL_WORD_RE2 = re2.compile(rb"""[^\s'"\\?*\[]*(?:['"\\]|[?*\[][^\s]*/|/[^\s]*[?*\[])[^\s]*""")
_OPTIONS_RE2 = re2.compile(rb"(?:^|\s)(?:--(?:recursive|force|verbose|interactive=never)|-[A-Za-z]{1,6})"
                           rb"(?:\s+(?:--(?:recursive|force|verbose|interactive=never)|-[A-Za-z]{1,6}))*(?:\s|$)")
_LONG_OPTIONS = {b"--recursive": b"-r", b"--force": b"-f", b"--verbose": b"-v", b"--interactive=never": b"-f"}
# Programs a glob in a path may stand for (`/bin/r?`, `/???/n?`): the ones the command rules name.
_GLOBBED_PROGRAMS = ("rm", "nc", "sh", "dd", "bash", "ncat", "netcat", "mkfs", "chmod", "chown", "curl", "wget",
                     "python", "python3", "perl", "kill", "shutdown", "reboot", "cat", "passwd")


def _rewrite(regex: Any, data: bytes, fn: Callable[[bytes], bytes]) -> bytes:
    """`data` with every match of `regex` replaced by `fn(match)`."""
    pieces: list[bytes] = []
    pos = 0
    for start, end in byte_spans(regex, data):
        if start < pos or end == start:
            continue
        pieces += (data[pos:start], fn(data[start:end]))
        pos = end
    return b"".join(pieces) + data[pos:] if pieces else data


def _unbase64_pipe(match: bytes) -> bytes:
    payload = re.search(rb"[A-Za-z0-9+/=]{4,}(?=['\"]?\s*\|)", match)
    try:
        decoded = _utf8(base64.b64decode(payload.group(0), validate=True)) if payload else None
    except (binascii.Error, ValueError):
        decoded = None
    return match if decoded is None else b" " + decoded.encode("utf-8", "surrogatepass") + b" "


def _unescape(match: bytes) -> bytes:
    """What `printf "\x72\x6d"` or `$'\x72\x6d'` prints: the escapes as the characters they name."""
    body = match[2:-1] if match.startswith(b"$'") else re.sub(
        rb"""^\$\(\s*(?:printf|echo\s+-ne?)\s+['"]?|['"]?\s*\)$""", b"", match)
    out = _ESCAPE_RE.sub(lambda m: bytes([int(m.group(1), 16) if m.group(1) else int(m.group(2), 8) & 0xFF]), body)
    return out if out.isascii() and out.strip() else match


def _shell_word(word: bytes) -> bytes:
    """One word as a shell passes it on: quotes and escapes gone, a globbed program named."""
    plain = word.replace(b"'", b"").replace(b'"', b"").replace(b"\\", b"")
    _head, slash, name = plain.rpartition(b"/")
    if slash and any(c in name for c in b"?*[") and any(chr(c).isalpha() for c in name):
        pattern = name.decode("ascii", "replace")
        found = next((prog for prog in _GLOBBED_PROGRAMS if fnmatch.fnmatchcase(prog, pattern)), None)
        if found is not None:
            return b"/bin/" + found.encode()
    return plain


def _join_options(run: bytes) -> bytes:
    """`--recursive --force` and `-r -f` as one group of short options: ` -rf `."""
    options = run.split()
    if len(options) == 1 and options[0] not in _LONG_OPTIONS:
        return run  # one group of short options already
    return b" -" + b"".join(_LONG_OPTIONS.get(opt, opt)[1:] for opt in options) + b" "


def _shell(text: str) -> str | None:
    """The text as a shell reads its words: quoting and escapes inside words dropped, $IFS a
    space, empty substitutions gone, characters printed from escapes written out, a base64
    payload piped to `base64 -d` (or `openssl base64 -d`) decoded, long options as short ones (joined:
    `-r -f` is `-rf`), a globbed program path named. Not a shell: a view for the rules."""
    data = text.encode("utf-8", "surrogatepass")
    out = _rewrite(_B64_PIPE_RE2, data, _unbase64_pipe)
    out = _rewrite(_IFS_RE2, out, lambda _: b" ")
    out = _rewrite(_EMPTY_SUBST_RE2, out, lambda m: b"" if m.startswith(b"$") else m[:1] + m[-1:])
    out = _rewrite(_ESCAPED_RE2, out, _unescape)
    out = _rewrite(_SHELL_WORD_RE2, out, _shell_word)
    out = _rewrite(_OPTIONS_RE2, out, _join_options)
    return None if out == data else out.decode("utf-8", "surrogatepass")


def derived_views(
    text: str,
    base: View,
    hints: frozenset[str] | None = None,
    *,
    max_depth: int = 2,
    max_decoded_chars: int = 65536,
) -> list[View]:
    """Views beyond the base one, each only when it differs from every earlier view.

    `hints` are trigger names already found on `base.text` (see TRIGGER_PATTERNS); None means
    find them here.
    """
    if hints is None:
        hints = find_triggers(base.text)
    non_ascii = not text.isascii()
    if not hints and not non_ascii:
        return []
    seen = {base.text}
    out: list[View] = []

    def add(candidate: str | None, transforms: tuple[str, ...]) -> View | None:
        if candidate is None:
            return None
        v = base_view(candidate)
        if v.text in seen or not v.text:
            return None
        seen.add(v.text)
        view = View(v.text, transforms + tuple(t for t in v.transforms if t not in transforms))
        out.append(view)
        return view

    if non_ascii:
        hidden = _hidden_tags(text)
        if hidden is not None:
            add(hidden, ("unicode_tags",))
        add(_skeleton(base.text), base.transforms + ("confusables",))
        add(_strip_marks(base.text, text), base.transforms + ("combining_marks",))
    if "whitespace" in hints:
        add(_collapse(base.text), base.transforms + ("whitespace",))
    if "noise" in hints:
        add(_denoise(base.text), base.transforms + ("noise",))
    if "spaced" in hints:
        add(_join_spaced(base.text), base.transforms + ("spaced",))
    if "separated" in hints or "\u00a0" in text:  # NFKC made no-break separators spaces in the base
        add(_unseparate(text), ("separated",))  # the text as sent: the base view has folded its spaces
    if "shell" in hints:
        add(_shell(base.text), base.transforms + ("shell",))
    if "leetspeak" in hints:
        add(_leet(base.text), base.transforms + ("leetspeak",))
    if "reversed" in hints:
        add(base.text[::-1], base.transforms + ("reversed",))
    if "rot13" in hints:
        add(codecs.encode(base.text, "rot13"), base.transforms + ("rot13",))

    budget = max_decoded_chars
    frontier: list[tuple[View, frozenset[str]]] = [(base, hints)]
    for _depth in range(max_depth):
        next_frontier: list[tuple[View, frozenset[str]]] = []
        for view, view_hints in frontier:
            for name in _DECODERS_ORDER:
                if name not in view_hints or budget <= 0:
                    continue
                decoded = _DECODERS[name](view.text)
                if decoded is None:
                    continue
                decoded = decoded[:budget]
                budget -= len(decoded)
                new = add(decoded, view.transforms + (name,))
                if new is not None:
                    next_frontier.append((new, find_triggers(new.text)))
        frontier = next_frontier
        if not frontier:
            break
    return out


def views(text: str, *, max_depth: int = 2, max_decoded_chars: int = 65536) -> list[View]:
    """Every view of `text` worth scanning, the cheaply normalised one first."""
    base = base_view(text)
    return [base, *derived_views(text, base, max_depth=max_depth,
                                 max_decoded_chars=max_decoded_chars)]
