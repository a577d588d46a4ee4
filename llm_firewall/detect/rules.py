"""YAML rule files → validated, compiled rules.

A broken rule must never reach the proxy: the loader refuses unknown keys, duplicate ids, bad enum
values, patterns RE2 cannot compile, patterns that would backtrack catastrophically on a
backtracking engine (nested unbounded quantifiers, backreferences, lookarounds), response rules
that could match more than 256 characters (they run on a sliding window over streams), and
rules whose own tests fail. Every error names the file, line, rule id and field. The typed
models of `rule_spec` (also the rules' JSON Schema) check a rule's shape: keys, types, enums,
ids, tags; this module checks and compiles what no schema can describe.

`stream_anchor` (optional, rules whose direction is response or both): an RE2 pattern that
matches, on the raw text, at or before every position where a match of the rule can start, e.g.
`sk-|AKIA` for API keys or `-----BEGIN` for private keys. A stream guard that knows every rule's
anchor can release answer text in which no anchor occurs instead of holding a full window (see
`Engine.stream_anchor`). The loader checks it against the rule's own `tests.match` examples: an
anchor match must start at or before the start of the rule's match. Anchors are bounded
(STREAM_ANCHOR_MAX_WIDTH characters) so that a guard knows how many trailing characters could
still be the beginning of an anchor that is not complete yet.
"""

from __future__ import annotations

import datetime
import re
import re._constants as sre_c  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import re2
from pydantic import ValidationError

from llm_firewall.detect.normalize import views
from llm_firewall.detect.re2raw import Lead, iter_spans, search_bytes, search_span
from llm_firewall.detect.rule_spec import (  # noqa: F401  (STATUSES: re-exported for the engine)
    STATUSES, VALIDATOR_NAMES, RegexEntry, RuleSpec, hidden_in_paths)
from llm_firewall.schema.located import LocatedError, field_path, plain, read, where
from llm_firewall.schema.typed import problems

RESPONSE_MAX_WIDTH = 256
EXCLUDE_CONTEXT = 64  # characters before a match (within its sentence) that `exclude` may use
MAX_MATCHES_TRIED = 8  # per pattern, when excludes or validators discard matches
STREAM_ANCHOR_MAX_WIDTH = 64


class RuleError(ValueError):
    """A rule file problem, located as precisely as the YAML allows."""

    def __init__(self, file: str, rule_id: str | None, field: str | None, line: int | None,
                 message: str) -> None:
        self.file, self.rule_id, self.field, self.line, self.message = (
            file, rule_id, field, line, message)
        where = f"{file}:{line}" if line else file
        parts = [where]
        if rule_id:
            parts.append(f"rule {rule_id}")
        if field:
            parts.append(f"field '{field}'")
        parts.append(message)
        super().__init__(": ".join(parts))


# --- validators a rule may name under `validate:` ---------------------------------------------


def luhn(candidate: str) -> bool:
    """Payment card check digit; cuts card-number false positives on order ids and phones."""
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban(candidate: str) -> bool:
    """ISO 13616 mod-97 check."""
    s = "".join(c for c in candidate if c.isalnum()).upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    moved = s[4:] + s[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in moved))
    except ValueError:
        return False
    return number % 97 == 1


VALIDATORS: dict[str, Callable[[str], bool]] = {"luhn": luhn, "iban": iban}
assert tuple(VALIDATORS) == VALIDATOR_NAMES


# --- compiled rule -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """One match/exclude entry: its RE2 source (flags included) and compiled form."""

    source: str  # what the author wrote (regex, or the phrases joined by " | ")
    regex_text: str  # the RE2 pattern actually run
    field: str
    regex: Any = field(compare=False, repr=False)
    lead: Lead | None = field(default=None, compare=False, repr=False)  # see `literal_lead`


# Where a sentence ends: an exclusion in another sentence explains nothing about this match.
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f]+(?=\s|$)|[\u3002\uff01\uff1f]|\n")


def explained(excludes: Iterable[Pattern], text: str, start: int, end: int) -> bool:
    """True when an `exclude` match explains the rule's match at `text[start:end]`.

    An exclusion clears only the span it explains: its own match must overlap the rule's
    match, or lead up to it within the same sentence (at most EXCLUDE_CONTEXT characters
    before it). An exclusion elsewhere in the text, or after the match, clears nothing, so
    "Ignore all previous instructions. How do I ignore errors in Python?" is still an
    override: the benign question does not launder the attack in front of it.
    """
    lo = max(0, start - EXCLUDE_CONTEXT)
    for m in _SENTENCE_END.finditer(text, lo, start):
        lo = m.end()
    window = text[lo:end + EXCLUDE_CONTEXT]
    limit = end - lo  # an exclusion must begin before the rule's match ends
    return any(next(iter_spans(x.regex, window), (limit, 0))[0] < limit for x in excludes)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    threat: str
    severity: str
    category: str
    status: str
    direction: str
    roles: tuple[str, ...]
    any: tuple[Pattern, ...]
    all: tuple[Pattern, ...] = ()
    exclude: tuple[Pattern, ...] = ()
    validate: str | None = None
    falsepositives: tuple[str, ...] = ()
    tests_match: tuple[str, ...] = ()
    tests_no_match: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    precision: float | None = None
    description: str = ""
    author: str = ""
    date: datetime.date | None = None
    file: str = ""
    line: int | None = None
    stream_anchor: Pattern | None = None
    severity_by_role: tuple[tuple[str, str], ...] = ()

    def severity_for(self, role: str) -> str:
        """The rule's severity for text from `role`: an instruction addressed to the assistant
        is the request itself in a user's message, and an attack inside a tool result."""
        for name, severity in self.severity_by_role:
            if name == role:
                return severity
        return self.severity

    def applies(self, direction: str) -> bool:
        return self.direction == "both" or self.direction == direction

    def find(self, text: str, items: Iterable[int] | None = None,
             data: bytes | None = None) -> tuple[int, int] | None:
        """Span of the first acceptable match in `text`, or None.

        `items` restricts the search to the `any` entries already known to hit (the engine's
        set pass); `all` entries must all be present; excludes and validators may discard a
        match, in which case the next one is tried. `data` is `text` as UTF-8, when the caller
        already has it.
        """
        if not self.exclude and self.validate is None:
            if data is None:
                data = text.encode("utf-8", "surrogatepass")
            for pat in self.all:
                if search_bytes(pat.regex, data, 0, pat.lead) is None:
                    return None
            for idx in (range(len(self.any)) if items is None else items):
                pat = self.any[idx]
                span = search_span(pat.regex, text, data, pat.lead)
                if span is not None:
                    return span
            return None
        return next(self.spans(text, items, MAX_MATCHES_TRIED, data), None)

    def spans(self, text: str, items: Iterable[int] | None = None, limit: int = 10_000,
              data: bytes | None = None) -> Iterator[tuple[int, int]]:
        """Every acceptable match span (up to `limit` tried per pattern), pattern by pattern."""
        if data is None:
            data = text.encode("utf-8", "surrogatepass")
        for pat in self.all:
            if search_bytes(pat.regex, data, 0, pat.lead) is None:
                return
        check = VALIDATORS[self.validate] if self.validate else None
        for idx in (range(len(self.any)) if items is None else items):
            pat = self.any[idx]
            for n, (start, end) in enumerate(iter_spans(pat.regex, text, data, pat.lead)):
                if n >= limit:
                    break
                if check is not None and not check(text[start:end]):
                    continue
                if self.exclude and explained(self.exclude, text, start, end):
                    continue
                yield start, end

    def own_test_failures(self) -> list[tuple[str, int, str]]:
        """(tests key, index, message) for every own test this rule fails, over all views."""
        out: list[tuple[str, int, str]] = []
        for i, sample in enumerate(self.tests_match):
            if not any(self.find(v.text) for v in views(sample)):
                out.append(("match", i, f"does not match {sample!r}"))
        for i, sample in enumerate(self.tests_no_match):
            if any(self.find(v.text) for v in views(sample)):
                out.append(("no_match", i, f"matches {sample!r}"))
        if self.stream_anchor is not None:
            for i, sample in enumerate(self.tests_match):
                problem = self.anchor_problem(sample)
                if problem:
                    out.append(("match", i, problem))
        return out

    def anchor_problem(self, sample: str) -> str | None:
        """Why `stream_anchor` fails to cover this rule's match in `sample` (None: it covers).

        Non-ASCII samples are covered by the engine's non-ASCII anchor (normalised views make
        matches out of such text, with offsets that differ from the raw text's).
        """
        if self.stream_anchor is None or not sample.isascii():
            return None
        start = min((span[0] for span in (self.find(v.text) for v in views(sample)[:1])
                     if span is not None), default=None)
        if start is None:
            return (f"stream_anchor: {sample!r} matches only in a decoded view, which no "
                    "anchor on the raw text can cover")
        anchor = search_span(self.stream_anchor.regex, sample)
        if anchor is None or anchor[0] > start:
            return (f"stream_anchor does not match at or before position {start} of {sample!r}, "
                    "where the rule's match starts")
        return None


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]

    def __len__(self) -> int:
        return len(self.rules)

    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}


# --- pattern checks ----------------------------------------------------------------------------

_UNBOUNDED = sre_c.MAXREPEAT
_REPEATS = {sre_c.MAX_REPEAT, sre_c.MIN_REPEAT}
_POSSESSIVE = getattr(sre_c, "POSSESSIVE_REPEAT", None)
if _POSSESSIVE is not None:
    _REPEATS.add(_POSSESSIVE)


def _has_unbounded_repeat(items: Any) -> bool:
    for op, av in items:
        if op in _REPEATS:
            if av[1] == _UNBOUNDED or _has_unbounded_repeat(av[2]):
                return True
        elif op is sre_c.SUBPATTERN and _has_unbounded_repeat(av[3]):
            return True
        elif op is sre_c.BRANCH and any(_has_unbounded_repeat(b) for b in av[1]):
            return True
        elif op is getattr(sre_c, "ATOMIC_GROUP", None) and _has_unbounded_repeat(av):
            return True
    return False


def _backtracking_hazard(items: Any) -> str | None:
    for op, av in items:
        if op in (sre_c.GROUPREF, sre_c.GROUPREF_EXISTS):
            return "backreferences are not allowed (RE2 cannot run them)"
        if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            return "lookarounds are not allowed (RE2 cannot run them)"
        if op in _REPEATS:
            if av[1] == _UNBOUNDED and _has_unbounded_repeat(av[2]):
                return ("nested unbounded quantifiers (like (a+)+) can backtrack "
                        "catastrophically; rewrite without the inner or outer repetition")
            found = _backtracking_hazard(av[2])
            if found:
                return found
        elif op is sre_c.SUBPATTERN:
            found = _backtracking_hazard(av[3])
            if found:
                return found
        elif op is sre_c.BRANCH:
            for b in av[1]:
                found = _backtracking_hazard(b)
                if found:
                    return found
    return None


def _phrase_regex(phrase: str) -> str:
    words = phrase.split()
    body = r"\s{1,16}".join(re.escape(w) for w in words)
    left = r"\b" if words and re.match(r"\w", words[0]) else ""
    right = r"\b" if words and re.search(r"\w$", words[-1]) else ""
    return f"{left}{body}{right}"


# DFA memory per rule pattern. With RE2's default (8 MiB) a pattern such as `[^\s]{0,300}?`
# between two tokens ran out of DFA states on every path-traversal payload and fell back to the
# NFA: ~300 µs per confirming search. 16 MiB keeps it in the DFA (~5 µs); memory is only taken
# as states are built (+3 MiB after the evaluation corpus, 9,000 texts).
RULE_DFA_MEM = 16 << 20


def _re2_options() -> Any:
    opts = re2.Options()
    opts.log_errors = False
    opts.max_mem = RULE_DFA_MEM
    return opts


_OPEN_COUNT = re.compile(r"(?<!\\)\{,\d*\}")  # `{,3}`: a repeat to Python, literal text to RE2


def check_pattern(regex_text: str, *, max_width: int | None) -> tuple[Any | None, str | None]:
    """Compile with RE2 and screen for backtracking hazards; returns (compiled, error)."""
    if _OPEN_COUNT.search(regex_text):
        return None, ("`{,n}` is literal text to RE2, not a repeat (and other tools disagree): "
                      "write `{0,n}`, or escape the brace")
    try:
        parsed = sre_parse.parse(regex_text)
    except (re.error, OverflowError, RecursionError):
        parsed = None  # RE2-only syntax: RE2 below is the judge
    if parsed is not None:
        hazard = _backtracking_hazard(parsed.data)
        if hazard:
            return None, hazard
    try:
        compiled = re2.compile(regex_text, _re2_options())
    except re2.error as exc:
        msg = exc.args[0] if exc.args else exc
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        return None, f"does not compile: {msg}"
    if max_width is not None:
        if parsed is None:
            return None, "response rules need a pattern whose length can be bounded"
        hi = parsed.getwidth()[1]
        if hi > max_width:
            return None, (f"can match more than {max_width} characters; response rules are "
                          f"applied through a {max_width}-character window, use bounded "
                          "quantifiers like {1,64}")
    return compiled, None


_COUNTED = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")
PREFILTER_MAX_COUNT = 8


def prefilter_regex(regex_text: str, max_count: int = PREFILTER_MAX_COUNT) -> str:
    """A looser form of an RE2 pattern for the engine's set pass: every counted repeat with a
    bound above `max_count` (`{0,300}`, `\\s{1,16}`, `{16,}`) becomes `*` or `+`.

    Why: the set's lazily built DFA tracks every live counter of every pattern at once, so on
    unseen text nearly every byte reached a new state (~1 µs a byte, with periodic cache
    resets). Without the counters the states repeat and the pass stays native-speed. The
    looser pattern matches a superset of the original's texts; the rule's own pattern then
    confirms each candidate, so findings are unchanged.
    """
    out: list[str] = []
    i, n = 0, len(regex_text)
    p = regex_text
    while i < n:
        c = p[i]
        if c == "\\":
            j = i + 2
            if i + 1 < n and p[i + 1] in "pPx" and j < n and p[j] == "{":
                j = p.index("}", j) + 1
            elif i + 1 < n and p[i + 1] == "Q":
                k = p.find("\\E", i)
                j = n if k < 0 else k + 2
            out.append(p[i:j])
            i = j
            continue
        if c == "[":  # a character class: copied as written
            j = i + 1
            if j < n and p[j] == "^":
                j += 1
            if j < n and p[j] == "]":
                j += 1
            while j < n and p[j] != "]":
                if p[j] == "\\":
                    j += 2
                elif p.startswith("[:", j) and ":]" in p[j:]:
                    j = p.index(":]", j) + 2
                else:
                    j += 1
            out.append(p[i:j + 1])
            i = j + 1
            continue
        m = _COUNTED.match(p, i) if c == "{" else None
        if m:
            lo = int(m.group(1))
            hi = None if m.group(2) and not m.group(3) else int(m.group(3) or lo)
            if hi is None or hi > max_count:
                # keep part of the lower bound: `{12,18}` digits as `{8,}`, not `+`, so dates and
                # short numbers in prose no longer make every card-number rule a candidate
                out.append("*" if lo == 0 else "+" if lo == 1 else f"{{{min(lo, max_count)},}}")
                i = m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def literal_lead(regex_text: str) -> Lead | None:
    """A literal that every match of the pattern contains, and how many bytes before it a match
    can start (see `re2raw`); None when there is none.

    Only top-level runs of ASCII characters without case (`@`, `://`, `<`, `-----`) qualify, so
    `(?i)` cannot change them, and only after a prefix of bounded width (counted as 4 bytes a
    character: UTF-8). The longest run wins: it occurs least often.
    """
    if "[:" in regex_text or "{," in regex_text:
        return None  # parsed differently in Python (POSIX classes; RE2 reads `{,3}` as text): no guesses
    try:
        items = list(sre_parse.parse(regex_text).data)
    except (re.error, OverflowError, RecursionError):
        return None  # RE2-only syntax
    while len(items) == 1 and items[0][0] is sre_c.SUBPATTERN:
        items = list(items[0][1][3].data)
    best: Lead | None = None
    chars = 0  # most characters the items so far can match
    i = 0
    while i < len(items):
        run = ""
        while i < len(items) and items[i][0] is sre_c.LITERAL and _caseless_ascii(items[i][1]):
            run += chr(items[i][1])
            i += 1
        if run:
            if best is None or len(run) > len(best[0]):
                best = (run.encode(), 4 * chars)
            chars += len(run)
            continue
        hi = sre_parse.SubPattern(sre_parse.State(), [items[i]]).getwidth()[1]
        if hi >= sre_c.MAXREPEAT:
            break  # unbounded: literals after this can lie anywhere in a match
        chars += hi
        i += 1
    return best


def _caseless_ascii(code: int) -> bool:
    return code < 128 and chr(code).lower() == chr(code).upper()


def pattern_width(regex_text: str) -> int:
    """Most characters a pattern can match (patterns that passed `check_pattern` with a width)."""
    return int(sre_parse.parse(regex_text).getwidth()[1])


# --- from YAML to compiled rules ----------------------------------------------------------------


class _Ctx:
    """Error collector for one file; knows where every field sits in the YAML."""

    def __init__(self, file: str, doc: Any) -> None:
        self.file = file
        self.doc = doc
        self.errors: list[RuleError] = []

    def line(self, path: Sequence[str | int]) -> int | None:
        found = where(self.doc, path)
        return found[1] if found else None

    def error(self, rule_id: str | None, base: list[str | int], rel: Sequence[str | int],
              message: str) -> None:
        self.errors.append(RuleError(self.file, rule_id, field_path(rel) or None,
                                     self.line([*base, *rel]), message))


def _parse_rule(raw: Any, base: list[str | int], ctx: _Ctx) -> Rule | None:
    """The compiled rule, or None with every problem found added to `ctx.errors`: the schema
    (`rule_spec`) first, then the patterns, the stream anchor and the rule's own examples."""
    if not isinstance(raw, dict):
        ctx.error(None, base, [], "a rule must be a mapping")
        return None
    rid = raw.get("id") if isinstance(raw.get("id"), str) else None

    def err(rel: Sequence[str | int], msg: str) -> None:
        ctx.error(rid, base, rel, msg)

    try:
        spec = RuleSpec.model_validate(plain(raw))
    except ValidationError as exc:
        for loc, message in problems(exc, hidden_in_paths):
            err(loc, message)
        return None
    before = len(ctx.errors)
    direction = spec.applies_to.direction
    max_width = RESPONSE_MAX_WIDTH if direction in ("response", "both") else None

    def patterns(entries: list[Any] | None, rel: list[str | int], width: int | None) -> tuple[Pattern, ...]:
        out: list[Pattern] = []
        for i, entry in enumerate(entries or ()):
            if isinstance(entry, RegexEntry):
                kind, source, text = "regex", entry.regex, entry.regex
            else:
                kind, source = "phrases", " | ".join(entry.phrases)
                text = "(?:" + "|".join(_phrase_regex(p) for p in entry.phrases) + ")"
            regex_text = "(?i)" + text
            compiled, problem = check_pattern(regex_text, max_width=width)
            if problem:
                err([*rel, i, kind], problem)
                continue
            out.append(Pattern(source, regex_text, field_path([*rel, i, kind]), compiled,
                               literal_lead(regex_text)))
        return tuple(out)

    any_p = patterns(spec.match.any, ["match", "any"], max_width)
    all_p = patterns(spec.match.all, ["match", "all"], None)
    exclude_p = patterns(spec.exclude, ["exclude"], None)

    anchor: Pattern | None = None
    body = spec.stream_anchor
    if body is not None:
        if direction not in ("response", "both"):
            err(["stream_anchor"], "only rules that apply to responses (applies_to.direction: "
                "response or both) can declare a stream anchor")
        elif not body:
            err(["stream_anchor"], "must be a non-empty regex string")
        else:
            compiled, problem = check_pattern("(?i)" + body, max_width=STREAM_ANCHOR_MAX_WIDTH)
            if problem and problem.startswith("can match more than"):
                problem = (f"can match more than {STREAM_ANCHOR_MAX_WIDTH} characters; an anchor "
                           "marks where a match can start, keep it short")
            if problem:
                err(["stream_anchor"], problem)
            else:
                anchor = Pattern(body, "(?i)" + body, "stream_anchor", compiled)

    if len(ctx.errors) > before:
        return None
    rule = Rule(
        id=spec.id, title=spec.title, threat=spec.threat, severity=spec.severity, category=spec.category,
        status=spec.status, direction=direction, roles=tuple(spec.applies_to.roles), any=any_p, all=all_p,
        exclude=exclude_p, validate=spec.validate_, falsepositives=tuple(spec.falsepositives),
        tests_match=tuple(spec.tests.match), tests_no_match=tuple(spec.tests.no_match),
        references=tuple(spec.references), tags=tuple(spec.tags), precision=spec.precision,
        description=spec.description, author=spec.author or "", date=spec.date, file=ctx.file,
        line=ctx.line(base), stream_anchor=anchor,
        severity_by_role=tuple((spec.severity_by_role or {}).items()),
    )
    for key, index, message in rule.own_test_failures():
        err(["tests", key, index], message)
    return None if len(ctx.errors) > before else rule


class _Disable(NamedTuple):
    """A `disable:` entry of a rules file: a rule id switched off by a later rules directory."""

    id: str
    file: str
    line: int | None


def _parse_file(path: Path, display: str) -> tuple[list[Rule], list[RuleError], list[_Disable]]:
    try:
        data = read(path, display)
    except LocatedError as exc:
        return [], [RuleError(display, None, exc.key, exc.line, exc.message)], []
    ctx = _Ctx(display, data)
    entries: list[tuple[Any, list[str | int]]] = []
    disabled: list[_Disable] = []
    if data is None:
        return [], [], []
    if isinstance(data, dict) and ("rules" in data or "disable" in data):
        extra = [k for k in data if k not in ("rules", "disable")]
        for k in extra:
            ctx.error(None, [], [str(k)], "unknown top-level key (a file holds one rule, rules: or disable:)")
        ids = data.get("disable", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            ctx.error(None, [], ["disable"], "must be a list of rule ids")
        else:
            disabled = [_Disable(rid, display, ctx.line(["disable", i])) for i, rid in enumerate(ids)]
        if not isinstance(data.get("rules", []), list):
            ctx.error(None, [], ["rules"], "must be a list of rules")
        else:
            entries = [(r, ["rules", i]) for i, r in enumerate(data.get("rules", []))]
    elif isinstance(data, dict):
        entries = [(data, [])]
    elif isinstance(data, list):
        entries = [(r, [i]) for i, r in enumerate(data)]
    else:
        ctx.error(None, [], [], "a rule file holds one rule (a mapping) or rules: [...]")
    rules = []
    for raw, base in entries:
        rule = _parse_rule(raw, base, ctx)
        if rule is not None:
            rules.append(rule)
    return rules, ctx.errors, disabled


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def _display(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _parse_all(path: str | Path, *, stop_at_first: bool) -> tuple[list[Rule], list[RuleError]]:
    rules, errors, _ = _parse_layer(path, stop_at_first=stop_at_first)
    return rules, errors


def _parse_layer(path: str | Path, *, stop_at_first: bool) -> tuple[list[Rule], list[RuleError], list[_Disable]]:
    root = Path(path)
    if not root.exists():
        return [], [RuleError(str(root), None, None, None, "no such file or directory")], []
    rules: list[Rule] = []
    errors: list[RuleError] = []
    disabled: list[_Disable] = []
    seen: dict[str, Rule] = {}
    for file in _files(root):
        got, errs, off = _parse_file(file, _display(file))
        errors.extend(errs)
        disabled.extend(off)
        for rule in got:
            if rule.id in seen:
                first = seen[rule.id]
                errors.append(RuleError(rule.file, rule.id, "id", rule.line,
                                        f"duplicate id (first defined in {first.file}:"
                                        f"{first.line})"))
                continue
            seen[rule.id] = rule
            rules.append(rule)
        if errors and stop_at_first:
            break
    return rules, errors, disabled


def parse_rules(path: str | Path) -> tuple[list[Rule], list[RuleError]]:
    """Every valid rule and every error under `path` (for linters that report all at once)."""
    return _parse_all(path, stop_at_first=False)


def load_rules(path: str | Path) -> RuleSet:
    """Load a directory of *.yaml rule files (or one file); raise RuleError on the first error."""
    rules, errors = _parse_all(path, stop_at_first=True)
    if errors:
        raise errors[0]
    return RuleSet(tuple(rules))


def load_rule_layers(paths: Sequence[str | Path]) -> RuleSet:
    """The rules of several directories, each layered on the ones before it, as fail2ban's
    `.local` files and CRS's exclusion files work: a later directory adds rules, replaces a rule
    by using its id, or switches rules off with `disable: [ids]`. The shipped directory comes
    first and is never edited. Raises RuleError on the first error (an unknown id to disable
    is one: a typo must not leave a rule on silently)."""
    merged: dict[str, Rule] = {}
    for path in paths:
        rules, errors, disabled = _parse_layer(path, stop_at_first=True)
        if errors:
            raise errors[0]
        for rule in rules:
            merged[rule.id] = rule  # a known id keeps its place; a new one goes last
        for off in disabled:
            if merged.pop(off.id, None) is None:
                raise RuleError(off.file, off.id, "disable", off.line, "no rule with this id to disable")
    return RuleSet(tuple(merged.values()))


def lint_rules(path: str | Path) -> list[RuleError]:
    """Every error in the rule files under `path` (empty when all is well)."""
    return _parse_all(path, stop_at_first=False)[1]


def default_rules_dir() -> Path:
    """The checkout's top-level rules/, else the copy bundled inside the installed package."""
    package = Path(__file__).resolve().parent.parent
    checkout = package.parent / "rules"
    if checkout.is_dir() and any(checkout.glob("*.yaml")):
        return checkout
    return package / "bundled" / "rules"
