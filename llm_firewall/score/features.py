"""Features of one finding that say how likely it is to be a false positive.

Each is a small number with a name, so the scorer can explain itself: the rule's measured
precision, the context around the match (code, questions and teaching, quoting, negation), the
role the text came from, how many independent signals agree, whether obfuscation had to be
undone, the caller's recent alerts, and the text's length and entropy. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import re2

from llm_firewall.detect.normalize import base_view
from llm_firewall.detect.re2raw import search_span
from llm_firewall.domain import Finding

LEARNED_RULE_ID = "ML-PI-001"

# +1 trusted (written by the operator), 0 neutral, -1 less trusted than a user (fetched content).
OPERATOR_ROLES = frozenset({"system", "developer", "instructions"})
DEFAULT_ROLE_TRUST: Mapping[str, float] = MappingProxyType({
    "system": 1.0, "developer": 1.0, "instructions": 1.0,
    "user": 0.0, "prompt": 0.0, "input": 0.0, "embedding": 0.0,
    "tool": -1.0, "function": -1.0, "tool_call": -0.5, "tool_description": -0.5,
    "schema": -0.5,
})


@dataclass(frozen=True)
class ScoreContext:
    """What the scorer knows beyond the text: the caller's recent alerts and role trust."""

    recent_alerts: int = 0
    role_trust: Mapping[str, float] = field(default_factory=lambda: DEFAULT_ROLE_TRUST)

    def trust(self, role: str) -> float:
        return float(self.role_trust.get(role, 0.0))


FEATURES: tuple[str, ...] = (
    "rule_precision",   # logit of the rule's measured precision (per severity for the model)
    "severity",         # 1 low .. 4 critical
    "code_context",     # 1 match inside a code block / inline code, 0.5 text has code, else 0
    "question",         # text or sentence framed as a question
    "educational",      # explain / what is / how do I / for my class ...
    "quoted",           # 1 match inside quotes, 0.5 quoting language in the text
    "negation",         # negation just before the match
    "role_trust",       # +1 system/developer, 0 user, -1 tool results
    "other_signals",    # distinct other rules/detectors on the same text (capped at 3)
    "other_threats",    # distinct other threat types on the same text (capped at 3)
    "learned_agrees",   # rule hit confirmed by the learned model, or model confirmed by a rule
    "obfuscated",       # normalisation steps were needed to see it
    "recent_alerts",    # log(1 + the caller's recent alerts)
    "log_length",       # log(1 + characters)
    "entropy",          # Shannon entropy of the characters, bits
)

_QUESTION_START = re.compile(
    r"^\W*(how|what|what's|whats|why|when|where|which|who|whom|whose|is|are|was|were|can|could|"
    r"should|would|will|do|does|did|has|have|explain|describe|define|tell me (about|what|why|how))\b",
    re.I)
_EDUCATIONAL_RE = re.compile(
    r"\b(explain|explanation|examples? of|what (is|are|does)|definition|define|meaning of|"
    r"difference between|tutorial|learn(ing)?|understand(ing)?|how (do|can|should|would) (i|we|you)|"
    r"for (my|a|our) (class|course|lesson|presentation|training|essay|article|blog|students?|team)|"
    r"(security|awareness) training|best practices?|in (python|java(script)?|bash|sql|c\+\+|rust|go)\b)",
    re.I)
_NEGATION = re.compile(r"\b(not|never|don't|dont|do not|doesn't|shouldn't|avoid|without|no|prevent|stop)\b\W*(\w+\W+){0,3}\W*$", re.I)  # noqa: E501
_QUOTING_WORDS_RE = re.compile(r"\b(the (phrase|sentence|string|word|text|line|prompt)|quote[sd]?|quoting|says?|said|wrote|example)\b", re.I)  # noqa: E501


class _Screened:
    """A Python `re` pattern behind a native RE2 screen: the same pattern without its `\\b`
    assertions (so a superset of its matches) is searched first, and Python's engine, whose
    Unicode-aware `\\b` decides, runs only from where the screen found a candidate.

    Why: Python's `re` has no literal to skip to in `\\b(explain|...)` and walked a 2 KB text at
    ~60 ns a character; most texts contain none of the words.
    """

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.screen = re2.compile("(?i)" + pattern.pattern.replace(r"\b", ""))

    def search(self, text: str) -> re.Match[str] | None:
        if "\u0130" in text or "\u0131" in text:  # Python folds these to "i", RE2 does not
            return self.pattern.search(text)
        span = search_span(self.screen, text)
        return None if span is None else self.pattern.search(text, span[0])


_EDUCATIONAL = _Screened(_EDUCATIONAL_RE)
_QUOTING_WORDS = _Screened(_QUOTING_WORDS_RE)
_FENCE = re.compile(r"```.*?(```|$)|`[^`\n]{1,200}`", re.S)
_SENTENCE_END = re.compile(r"[.!?\n]\s")


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def entropy(text: str) -> float:
    if not text:
        return 0.0
    counts = Counter(text[:4096])
    n = sum(counts.values())
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _inside(spans: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    return any(a <= start and end <= b for a, b in spans)


def _in_quotes(text: str, start: int, end: int) -> bool:
    before, after = text[:start], text[end:]
    for left, right in (('"', '"'), ("\u201c", "\u201d"), ("\u00ab", "\u00bb")):
        if left == right:
            if before.count(left) % 2 == 1 and left in after:
                return True
        elif before.rfind(left) > before.rfind(right) and right in after:
            return True
    # Single quotes only when they clearly delimit (not apostrophes inside words).
    m = re.search(r"(^|\s)'[^']*$", before)
    return bool(m and re.match(r"[^']*'(\s|$|[.,;:!?])", after))


@dataclass(frozen=True, slots=True)
class TextFacts:
    """Per-text facts shared by every finding on that text (computed once)."""

    view: str
    code_spans: tuple[tuple[int, int], ...]
    question: float
    educational: float
    quoting_words: float
    log_length: float
    entropy: float

    @classmethod
    def of(cls, text: str) -> TextFacts:
        head = text[:16384]
        view = base_view(head).text
        return cls(
            view=view,
            code_spans=tuple(m.span() for m in _FENCE.finditer(view)),
            question=1.0 if (_QUESTION_START.search(view) or view.rstrip().endswith("?")) else 0.0,
            educational=1.0 if _EDUCATIONAL.search(view[:2000]) else 0.0,
            quoting_words=1.0 if _QUOTING_WORDS.search(view[:2000]) else 0.0,
            log_length=math.log1p(len(text)),
            entropy=entropy(view),
        )


def finding_features(
    f: Finding,
    facts: TextFacts,
    siblings: Sequence[Finding],
    ctx: ScoreContext,
    precision: Mapping[str, float],
    default_precision: float,
) -> dict[str, float]:
    """The FEATURES of one finding; `siblings` are the other findings on the same text."""
    view = facts.view
    span = f.span if (f.span and not f.transforms and f.rule_id != LEARNED_RULE_ID
                      and 0 <= f.span[0] <= f.span[1] <= len(view)) else None
    if span is not None:
        start, end = span
        code = 1.0 if _inside(facts.code_spans, start, end) else (0.5 if facts.code_spans else 0.0)
        quoted = 1.0 if _in_quotes(view, start, end) else 0.5 * facts.quoting_words
        negation = 1.0 if _NEGATION.search(view[max(0, start - 40):start]) else 0.0
        sentence_start = max((m.end() for m in _SENTENCE_END.finditer(view, 0, start)), default=0)
        question = max(facts.question if sentence_start == 0 else 0.0,
                       1.0 if _QUESTION_START.search(view[sentence_start:end]) else 0.0)
    else:
        code = 0.5 if facts.code_spans else 0.0
        quoted = 0.5 * facts.quoting_words
        negation = 0.0
        question = facts.question
    others = {s.rule_id for s in siblings if s.rule_id != f.rule_id}
    threats = {s.threat for s in siblings if s.threat != f.threat}
    if f.rule_id == LEARNED_RULE_ID:
        agrees = any(s.threat in ("prompt_injection", "data_exfiltration") for s in siblings
                     if s.rule_id != LEARNED_RULE_ID)
    else:
        agrees = any(s.rule_id == LEARNED_RULE_ID for s in siblings)
    # Most specific measured precision first: a rule's hits on operator system prompts say little
    # about its hits in a user's message, so the table also keeps it per role ("rule:sev@role").
    # Not for operator roles (system, developer, instructions): the corpora hold almost no attacks
    # written there, so the measured precision only says that operators' prompts are benign,
    # nothing about a client who writes an attack into a system message. Those roles are guarded
    # by corroboration instead (score/corroborate.py: two detectors must agree to refuse).
    overall = precision.get(f"{f.rule_id}:{f.severity}", precision.get(f.rule_id, default_precision))
    p = overall if f.role in OPERATOR_ROLES else precision.get(f"{f.rule_id}:{f.severity}@{f.role}", overall)
    return {
        "rule_precision": _logit(p),
        "severity": float(f.rank),
        "code_context": code,
        "question": question,
        "educational": facts.educational,
        "quoted": quoted,
        "negation": negation,
        "role_trust": ctx.trust(f.role),
        "other_signals": float(min(len(others), 3)),
        "other_threats": float(min(len(threats), 3)),
        "learned_agrees": 1.0 if agrees else 0.0,
        "obfuscated": 1.0 if f.transforms else 0.0,
        "recent_alerts": math.log1p(max(0, ctx.recent_alerts)),
        "log_length": facts.log_length,
        "entropy": facts.entropy,
    }
