"""Runs every rule of a direction over every view of a text in one RE2 set pass per view.

Why a set: a per-rule loop costs milliseconds per request; one `RE2::Set` pass over the
normalised text costs microseconds and names the few candidate rules, whose own regex then
runs only to find the span and apply excludes and validators. The normaliser's trigger patterns
ride in the same set, so a plain text costs one pass in total.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

import re2

from llm_firewall.detect.normalize import TRIGGER_PATTERNS, View, base_view, derived_views
from llm_firewall.detect.verdicts import VerdictCache
from llm_firewall.detect.rules import STATUSES, Rule, RuleSet, pattern_width, prefilter_regex
from llm_firewall.domain import SEVERITIES, Finding, TextItem
from llm_firewall.redact import MASK, excerpt

EXCERPT_CONTEXT = 40
EXCERPT_MAX = 200
_MASKED_THREATS = frozenset({"secret_leakage", "privacy_violation"})
_OVERRIDE_KEYS = {"enabled", "severity", "status"}
NON_ASCII_ANCHOR = r"[^\x00-\x7f]"


class Detector(Protocol):
    """An extra signal source (for example a learned model) run after the rules."""

    def detect(self, text: str, role: str, path: str, direction: str) -> list[Finding]: ...


# Patterns per RE2 set. One set of every exact rule pattern cost ~1 ms per unseen 2 KB (its DFA
# states are products of all patterns' counters and positions, so fresh text kept building new
# ones). Sets of loosened patterns reuse their states; 48 a set (4 sets for the 174 patterns
# this was measured on, 6 for the 268 request patterns and triggers shipped now) keeps unseen
# text cheap while familiar text still costs only a few
# native passes. Fewer, larger sets trade the one for the other: on half the evaluation corpus,
# after the other half warmed the DFAs, 3 / 2 / 1 sets scanned 30 / 40 / 79 % slower, while the
# bench prompt's set passes went from 14.8 µs to 12.1 / 10.0 / 7.1 (benchmarks/set_groups.py).
SET_GROUP = 48


def _compile_set(patterns: Sequence[str], fallback: Sequence[str]) -> Any:
    opts = re2.Options()
    opts.max_mem = 64 << 20  # a set's DFA must not run out of memory on long texts
    opts.log_errors = False
    rset = re2.Set.SearchSet(opts)
    for pat, exact in zip(patterns, fallback):
        try:
            rset.Add(pat)
        except re2.error:
            rset.Add(exact)
    rset.Compile()
    return rset._set.Match  # the raw binding: bytes in, indices out, no wrapper cost


class _Compiled:
    """One direction's rules folded into a few RE2 sets, plus the normaliser's triggers.

    The sets hold loosened patterns (`prefilter_regex`): they name candidate rules, whose own
    patterns then confirm the match and find its span.
    """

    __slots__ = ("rules", "owners", "triggers", "groups")

    def __init__(self, rules: list[Rule], group: int = SET_GROUP) -> None:
        self.rules = rules
        self.owners: list[tuple[int, int]] = []
        exact: list[str] = []
        for r_index, rule in enumerate(rules):
            for i_index, pat in enumerate(rule.any):
                exact.append(pat.regex_text)
                self.owners.append((r_index, i_index))
        self.triggers = list(TRIGGER_PATTERNS)
        trig = [TRIGGER_PATTERNS[name] for name in self.triggers]
        # Numbered rules first, then triggers; the triggers fill the last group rather than
        # taking a pass of their own. (match, number of its first pattern)
        loose = [prefilter_regex(p) for p in exact] + trig
        exact += trig
        self.groups: list[tuple[Any, int]] = [
            (_compile_set(loose[i:i + group], exact[i:i + group]), i)
            for i in range(0, len(loose), group)
        ]

    def hits(self, data: bytes) -> tuple[dict[int, list[int]], frozenset[str]]:
        """Candidate rules (index → `any` items that hit) and trigger names found in `data`
        (a text's UTF-8 bytes, encoded once by the caller and reused for the rules' searches)."""
        n_items = len(self.owners)
        cands: dict[int, list[int]] = {}
        trig: list[str] = []
        for match, offset in self.groups:
            found = match(data)
            if not found:
                continue
            for idx in sorted(found):
                idx += offset
                if idx < n_items:
                    r_index, i_index = self.owners[idx]
                    cands.setdefault(r_index, []).append(i_index)
                else:
                    trig.append(self.triggers[idx - n_items])
        return cands, frozenset(trig)


def _apply_overrides(rules: Iterable[Rule], overrides: Mapping[str, Mapping[str, Any]]
                     ) -> list[Rule]:
    out = []
    for rule in rules:
        o = overrides.get(rule.id)
        if o is None:
            out.append(rule)
            continue
        if o.get("enabled", True) is False:
            continue
        changes: dict[str, Any] = {k: o[k] for k in ("severity", "status") if k in o}
        if "severity" in changes:  # the operator's severity holds for every role
            changes["severity_by_role"] = ()
        out.append(dataclasses.replace(rule, **changes) if changes else rule)
    return out


def _check_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> None:
    for rule_id, o in overrides.items():
        if not isinstance(o, Mapping):
            raise ValueError(f"rule override {rule_id}: must be a mapping")
        for key, value in o.items():
            if key not in _OVERRIDE_KEYS:
                raise ValueError(f"rule override {rule_id}: unknown field '{key}' "
                                 f"(allowed: {', '.join(sorted(_OVERRIDE_KEYS))})")
            if key == "enabled" and not isinstance(value, bool):
                raise ValueError(f"rule override {rule_id}: field 'enabled' must be true/false")
            if key == "severity" and value not in SEVERITIES:
                raise ValueError(f"rule override {rule_id}: field 'severity': {value!r} is not "
                                 f"one of {', '.join(SEVERITIES)}")
            if key == "status" and value not in STATUSES:
                raise ValueError(f"rule override {rule_id}: field 'status': {value!r} is not "
                                 f"one of {', '.join(STATUSES)}")


def _excerpt(rule: Rule, view: View | str, span: tuple[int, int]) -> str:
    """The alert's snippet, cut from the redacted text (`redact.excerpt`). A reversed view's
    credentials read backwards: they are found on the text turned back, then the cut is turned
    again so the snippet still shows what the rule saw."""
    hide = rule.threat in _MASKED_THREATS
    if isinstance(view, str) or "reversed" not in view.transforms:
        text = view if isinstance(view, str) else view.text
        return excerpt(text, span, context=EXCERPT_CONTEXT, limit=EXCERPT_MAX, hide=hide)
    n = len(view.text)
    forward = excerpt(view.text[::-1], (n - span[1], n - span[0]), context=EXCERPT_CONTEXT,
                      limit=EXCERPT_MAX, hide=hide)
    return forward[::-1].replace(MASK[::-1], MASK)


class Engine:
    """Findings for texts, from a rule set (with per-policy overrides) and extra detectors."""

    def __init__(self, ruleset: RuleSet, *,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 detectors: Sequence[Detector] = (), verdict_cache_chars: int = 0) -> None:
        overrides = dict(overrides or {})
        _check_overrides(overrides)
        self.ruleset = ruleset
        self.overrides = overrides
        known = {r.id for r in ruleset.rules}
        self.unknown_overrides = sorted(k for k in overrides if k not in known)
        self.rules = _apply_overrides(ruleset.rules, overrides)
        self.rule_count = len(self.rules)
        self.detectors = tuple(detectors)
        self._compiled = {
            direction: _Compiled([r for r in self.rules if r.applies(direction)])
            for direction in ("request", "response")
        }
        self._anchors: dict[tuple[str, frozenset[str] | None], tuple[Any | None, int]] = {}
        # Off unless asked for: benchmarks and evaluations must measure the inspection itself.
        self.verdicts: VerdictCache[tuple[Finding, ...]] | None = (
            VerdictCache(verdict_cache_chars) if verdict_cache_chars > 0 else None)

    # --- scanning ------------------------------------------------------------------------------

    def _scan_view(self, comp: _Compiled, view: View, role: str, path: str,
                   found: dict[str, Finding]) -> frozenset[str]:
        data = view.text.encode("utf-8", "surrogatepass")
        cands, trig = comp.hits(data)
        for r_index, items in cands.items():
            rule = comp.rules[r_index]
            if rule.roles and role not in rule.roles:
                continue
            prior = found.get(rule.id)
            if prior is not None and len(prior.transforms) <= len(view.transforms):
                continue
            span = rule.find(view.text, items, data)
            if span is None:
                continue
            found[rule.id] = Finding(
                rule_id=rule.id, title=rule.title, threat=rule.threat,
                severity=rule.severity_for(role), role=role, path=path, category=rule.category,
                transforms=view.transforms, status=rule.status, excerpt=_excerpt(rule, view, span), span=span,
            )
        return trig

    def _rule_findings(self, text: str, role: str, direction: str, path: str
                       ) -> list[Finding]:
        comp = self._compiled[direction]
        base = base_view(text)
        found: dict[str, Finding] = {}
        hints = self._scan_view(comp, base, role, path, found)
        if hints or not text.isascii():
            for view in derived_views(text, base, hints):
                self._scan_view(comp, view, role, path, found)
        return list(found.values())

    def scan_text(self, text: str, role: str = "user", direction: str = "request",
                  path: str = "", *, remember: bool = True) -> list[Finding]:
        """Every finding for one text: rules over all its views, then the extra detectors.

        With a verdict cache, a text judged before is answered from it (fresh copies, carrying
        this call's path); `remember=False` keeps one-off texts such as stream windows out."""
        self._check_direction(direction)
        verdicts = self.verdicts if remember else None
        if verdicts is not None:
            key = (direction, role, text)
            known = verdicts.get(key)
            if known is not None:
                return [dataclasses.replace(f, path=path) for f in known] if known else []
        findings = self._judge(text, role, direction, path)
        if verdicts is not None:
            verdicts.put(key, tuple(dataclasses.replace(f) for f in findings))
        return findings

    def _judge(self, text: str, role: str, direction: str, path: str) -> list[Finding]:
        findings = self._rule_findings(text, role, direction, path)
        for detector in self.detectors:
            for f in detector.detect(text, role, path, direction):
                o = self.overrides.get(f.rule_id)
                if o is not None:
                    if o.get("enabled", True) is False:
                        continue
                    f = dataclasses.replace(f, **{k: o[k] for k in ("severity", "status")
                                                  if k in o})
                findings.append(f)
        return findings

    def scan(self, items: Iterable[TextItem], direction: str = "request") -> list[Finding]:
        out: list[Finding] = []
        for item in items:
            out.extend(self.scan_text(item.text, item.role, direction, item.path))
        return out

    # --- streaming ------------------------------------------------------------------------------

    def stream_anchor(self, direction: str = "response", only: Collection[str] | None = None) -> Any | None:
        """One compiled RE2 pattern matching wherever a match of an enabled rule may start.

        The union of every enabled rule's `stream_anchor` for `direction` (or of the rules named
        in `only`: those whose findings the policy would act on), plus any non-ASCII character
        (normalised views make matches out of non-ASCII text, at offsets that differ from the raw
        text's). Raw answer text before the first anchor match can be released: no rule match
        starts there. The last `stream_anchor_width() - 1` characters must still be held, since an
        anchor may be incomplete at the end of the text so far. Matches that only a decoding view
        reveals (base64, hex, percent-encoding of ASCII text) are not anchored. None when a
        selected rule declares no anchor: then hold a full window.
        """
        return self._anchor_entry(direction, only)[0]

    def stream_anchor_width(self, direction: str = "response", only: Collection[str] | None = None) -> int:
        """Most characters one anchor match spans (0 when `stream_anchor` is None)."""
        return self._anchor_entry(direction, only)[1]

    def _anchor_entry(self, direction: str, only: Collection[str] | None) -> tuple[Any | None, int]:
        self._check_direction(direction)
        key = (direction, None if only is None else frozenset(only))
        if key not in self._anchors:
            rules = [r for r in self._compiled[direction].rules if only is None or r.id in only]
            if any(r.stream_anchor is None for r in rules):
                self._anchors[key] = (None, 0)
            else:
                parts = [f"(?i:{r.stream_anchor.source})" for r in rules if r.stream_anchor is not None]
                parts.append(NON_ASCII_ANCHOR)
                opts = re2.Options()
                opts.max_mem = 64 << 20
                width = max((pattern_width(r.stream_anchor.regex_text) for r in rules
                             if r.stream_anchor is not None), default=1)
                self._anchors[key] = (re2.compile("|".join(parts), opts), max(width, 1))
        return self._anchors[key]

    def rules_for(self, direction: str) -> list[Rule]:
        """The enabled rules of one direction (after overrides)."""
        self._check_direction(direction)
        return list(self._compiled[direction].rules)

    def _check_direction(self, direction: str) -> None:
        if direction not in self._compiled:
            raise ValueError(f"direction must be request or response, not {direction!r}")

    # --- masking -------------------------------------------------------------------------------

    def redact(self, text: str, *, threats: Collection[str] | None = None,
               direction: str = "request", mask: str = "[REDACTED]"
               ) -> tuple[str, list[Finding]]:
        """Mask every match of the chosen threats' rules in `text` as written.

        Works on the plain text (not on decoded views) so that offsets are the caller's own;
        defaults to personal data and secrets, the data the "redact" action exists for.
        """
        merged, findings = self.mask_spans(text, threats=threats, direction=direction)
        if not merged:
            return text, []
        out, pos = [], 0
        for start, end in merged:
            out.append(text[pos:start])
            out.append(mask)
            pos = end
        out.append(text[pos:])
        return "".join(out), findings

    def mask_spans(self, text: str, *, threats: Collection[str] | None = None,
                   direction: str = "request") -> tuple[list[tuple[int, int]], list[Finding]]:
        """Where `redact` masks (sorted, merged spans of `text`), and its findings."""
        wanted = frozenset(threats) if threats is not None else _MASKED_THREATS
        comp = self._compiled[direction]
        data = text.encode("utf-8", "surrogatepass")
        cands, _ = comp.hits(data)
        spans: list[tuple[int, int]] = []
        findings: list[Finding] = []
        for r_index, items in cands.items():
            rule = comp.rules[r_index]
            if rule.threat not in wanted:
                continue
            got = list(rule.spans(text, items, data=data))
            if not got:
                continue
            spans.extend(got)
            findings.append(Finding(
                rule_id=rule.id, title=rule.title, threat=rule.threat, severity=rule.severity,
                role="response" if direction == "response" else "user", category=rule.category,
                status=rule.status, excerpt=_excerpt(rule, text, got[0]), span=got[0],
            ))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged, findings

    # --- self-test -----------------------------------------------------------------------------

    def run_tests(self) -> list[str]:
        """Run every rule's own examples through the full engine (set pass included)."""
        engine = Engine(self.ruleset)
        failures = []
        for rule in self.ruleset.rules:
            direction = "response" if rule.direction == "response" else "request"
            role = rule.roles[0] if rule.roles else ("response" if direction == "response"
                                                      else "user")
            for sample in rule.tests_match:
                ids = {f.rule_id for f in engine.scan_text(sample, role, direction)}
                if rule.id not in ids:
                    failures.append(f"{rule.file}: rule {rule.id}: tests.match: "
                                    f"{sample!r} is not detected")
            for sample in rule.tests_no_match:
                ids = {f.rule_id for f in engine.scan_text(sample, role, direction)}
                if rule.id in ids:
                    failures.append(f"{rule.file}: rule {rule.id}: tests.no_match: "
                                    f"{sample!r} is detected")
        return failures
