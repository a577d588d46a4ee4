"""A regex for the unfinished beginnings of another regex's matches.

Why: a stream guard must hold the end of the text so far when it may be the start of an anchor
that the next delta completes ("sk-" may become a key). Holding a fixed tail of the anchor's
width delays every stream by a couple of events; holding only what really is a prefix of some
anchor match ("Thanks for" keeps "for", a possible encoded run, and releases "Thanks ") does not.

`prefix_pattern(p)` builds, from the parse tree of `p`, an RE2 pattern matching every prefix
of every string `p` matches (the empty string included). It may match more than that, never
less: zero-width assertions (`\\b`, `^`, `$`) are dropped, because on a slice of the text they
would be judged without the characters before it. Anchored as `(?:...)\\z` and searched in the
tail, its leftmost match is the earliest offset from which the text could still become a match.
"""

from __future__ import annotations

import re._constants as sc  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
from typing import Any

_CATEGORIES = {
    sc.CATEGORY_DIGIT: r"\d", sc.CATEGORY_NOT_DIGIT: r"\D",
    sc.CATEGORY_SPACE: r"\s", sc.CATEGORY_NOT_SPACE: r"\S",
    sc.CATEGORY_WORD: r"\w", sc.CATEGORY_NOT_WORD: r"\W",
}
_MAX_COUNT = 1000  # RE2's largest counted repeat
_REPEATS = tuple(op for op in (sc.MAX_REPEAT, sc.MIN_REPEAT, getattr(sc, "POSSESSIVE_REPEAT", None)) if op)


class Unsupported(ValueError):
    """The pattern uses syntax this module cannot rewrite (back-references, look-arounds)."""


def _char(code: int) -> str:
    c = chr(code)
    return c if c.isascii() and c.isalnum() else f"\\x{{{code:x}}}"


def _flags(add: int, drop: int) -> str:
    on = "i" if add & sc.SRE_FLAG_IGNORECASE else ""
    on += "s" if add & sc.SRE_FLAG_DOTALL else ""
    off = "i" if drop & sc.SRE_FLAG_IGNORECASE else ""
    return on + (f"-{off}" if off else "")


def _set(items: list[tuple[Any, Any]]) -> str:
    out = ""
    for op, av in items:
        if op is sc.NEGATE:
            out = "^" + out
        elif op is sc.LITERAL:
            out += _char(av)
        elif op is sc.RANGE:
            out += f"{_char(av[0])}-{_char(av[1])}"
        elif op is sc.CATEGORY and av in _CATEGORIES:
            out += _CATEGORIES[av]
        else:
            raise Unsupported(f"set item {op}")
    return f"[{out}]"


def _repeat(body: str, lo: int, hi: int) -> str:
    if hi >= sc.MAXREPEAT or hi > _MAX_COUNT:
        return f"(?:{body}){{{min(lo, _MAX_COUNT)},}}"
    return f"(?:{body}){{{lo},{hi}}}"


def _full(seq: Any) -> str:
    """The regex for a parsed sequence, assertions dropped (a superset of the original)."""
    return "".join(_item(op, av) for op, av in seq)


def _item(op: Any, av: Any) -> str:
    if op is sc.LITERAL:
        return _char(av)
    if op is sc.NOT_LITERAL:
        return f"[^{_char(av)}]"
    if op is sc.ANY:
        return "(?s:.)"
    if op is sc.IN:
        return _set(av)
    if op is sc.AT:
        return ""
    if op is sc.BRANCH:
        return "(?:" + "|".join(_full(alt) for alt in av[1]) + ")"
    if op is sc.SUBPATTERN:
        _, add, drop, sub = av
        flags = _flags(add, drop)
        return f"(?{flags}:{_full(sub)})" if flags else f"(?:{_full(sub)})"
    if op in _REPEATS:
        lo, hi, sub = av
        return _repeat(_full(sub), lo, hi)
    raise Unsupported(f"{op}")


def _prefix(seq: Any) -> str:
    """Every prefix of every match of a parsed sequence: P(x1 x2..) = P(x1) | x1 P(x2..)."""
    items = [(op, av) for op, av in seq if op is not sc.AT]
    out = ""
    for op, av in reversed(items):
        first = _item_prefix(op, av)
        out = f"(?:{first}|{_item(op, av)}{out})" if out else first
    return out or "(?:)"


def _item_prefix(op: Any, av: Any) -> str:
    if op in (sc.LITERAL, sc.NOT_LITERAL, sc.ANY, sc.IN):
        return f"{_item(op, av)}?"
    if op is sc.BRANCH:
        return "(?:" + "|".join(_prefix(alt) for alt in av[1]) + ")"
    if op is sc.SUBPATTERN:
        _, add, drop, sub = av
        flags = _flags(add, drop)
        return f"(?{flags}:{_prefix(sub)})" if flags else _prefix(sub)
    if op in _REPEATS:  # up to hi - 1 whole repetitions, then the beginning of one more
        _, hi, sub = av
        return f"{_repeat(_full(sub), 0, hi - 1)}{_prefix(sub)}" if hi else "(?:)"
    raise Unsupported(f"{op}")


def prefix_pattern(pattern: str) -> str:
    """An RE2 pattern matching every prefix of every match of `pattern` (a superset, see above)."""
    try:
        tree = sre_parse.parse(pattern)
    except Exception as exc:  # re.error and friends: RE2-only syntax
        raise Unsupported(str(exc)) from exc
    flags = _flags(tree.state.flags, 0)
    body = _prefix(tree)
    return f"(?{flags}:{body})" if flags else body
