"""The native-binding searches give exactly the spans the google-re2 wrapper gives."""

from __future__ import annotations

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_firewall.detect.re2raw import first_start, found, iter_spans, search_bytes, search_span
from llm_firewall.detect.rules import default_rules_dir, literal_lead, load_rules


@pytest.mark.parametrize("pattern, text", [
    (r"\bsk-[a-z0-9]{4}", "keys: sk-ab12 and sk-cd34, not ask-zz99"),
    (r"[0-9]+", "Überweisung 1234 an Zoë, 56 € und 7"),
    (r"x*", "axxb€x"),  # empty matches step over whole characters
    (r"é+", "café crème brûlée"),
    (r"[^\x00-\x7f]", "plain, then ü"),
    (r"\bok", "ok at the start"),
    (r"nothing", "plain text"),
])
def test_spans_equal_the_wrappers_finditer(pattern: str, text: str) -> None:
    regex = re2.compile(pattern)
    expected = [m.span() for m in regex.finditer(text)]
    assert list(iter_spans(regex, text)) == expected
    assert search_span(regex, text) == (expected[0] if expected else None)
    assert first_start(regex, text) == (expected[0][0] if expected else -1)
    assert found(regex, text) is bool(expected)


def test_search_bytes_gives_byte_offsets_from_a_position() -> None:
    regex = re2.compile(r"ab")
    data = "é ab ab".encode()
    assert search_bytes(regex, data) == (3, 5)
    assert search_bytes(regex, data, 5) == (6, 8)
    assert search_bytes(regex, data, 8) is None


# --- literal leads ---------------------------------------------------------------------------


_LEAD_PATTERNS = [p for rule in load_rules(default_rules_dir()).rules
                  for p in rule.any + rule.all if p.lead is not None]


def test_shipped_rules_have_leads_for_the_patterns_with_a_caseless_literal() -> None:
    leads = {p.lead[0] for p in _LEAD_PATTERNS}
    assert {b"@", b"://", b"<", b"-----"} <= leads
    email = next(p for p in _LEAD_PATTERNS if p.lead[0] == b"@")
    assert email.lead == (b"@", 4 * 41)  # `[a-z0-9][a-z0-9._%+-]{0,40}` before the "@"


@pytest.mark.parametrize("pattern, lead", [
    (r"(?i)\b[a-z0-9]{0,40}@x", (b"@", 160)),
    (r"(?i)-----BEGIN [A-Z ]{0,20}KEY", (b"-----", 0)),
    (r"(?i)ab{2}://q<", (b"://", 12)),  # the longest caseless run
    (r"(?i)ab{2}://q<|x", None),  # a top-level alternation
    (r"(?i)(?:x{2}<y)", (b"<", 8)),  # one group around everything is looked through
    (r"(?i)a*@b", None),  # unbounded before the literal: it may lie anywhere
    (r"(?i)ab@c|d@e", None),  # no literal common to the branches
    (r"(?i)abc", None),  # letters change under (?i)
    (r"(?i)[[:digit:]]{3}-x", None),  # POSIX classes parse differently in Python
    (r"(?i)a{,1}@", None),  # RE2 matches "a{,1}@" literally, Python reads a repeat
    (r"(?i)\pL{2}@", None),  # RE2-only syntax
])
def test_literal_lead(pattern: str, lead: tuple[bytes, int] | None) -> None:
    assert literal_lead(pattern) == lead


_PIECES = st.sampled_from(["@", "://", "<", "<!", "<|", "{{", "-----", "-", "'", "+", ".", "=",
                           ":", "/", "0x", " ", "\n", "a", "Z", "jane.doe", "mail.io", "example.com",
                           "http", "script", "BEGIN ", "PRIVATE KEY", "sk-", "eyJ", "1234", "é",
                           "ß", "€", "\u0130", "ﬀ"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=60), st.integers(0, len(_LEAD_PATTERNS) - 1))
def test_a_lead_never_changes_what_a_pattern_finds(pieces: list[str], index: int) -> None:
    pat = _LEAD_PATTERNS[index]
    text = "".join(pieces)
    data = text.encode("utf-8", "surrogatepass")
    assert list(iter_spans(pat.regex, text, data, pat.lead)) == list(iter_spans(pat.regex, text, data))
    assert search_span(pat.regex, text, data, pat.lead) == search_span(pat.regex, text, data)


@pytest.mark.parametrize("pat", _LEAD_PATTERNS, ids=lambda p: p.field)
def test_a_lead_finds_what_the_rule_examples_contain(pat) -> None:
    rules = load_rules(default_rules_dir()).rules
    rule = next(r for r in rules if pat in r.any + r.all)
    for sample in rule.tests_match + rule.tests_no_match:
        prefix = "x" * 300 + "é" * 50 + " "  # matches far from the start, after multibyte text
        for text in (sample, prefix + sample, prefix + sample + " " + sample):
            data = text.encode()
            assert list(iter_spans(pat.regex, text, data, pat.lead)) == list(iter_spans(pat.regex, text, data))


def test_a_lead_counts_multibyte_characters_before_the_literal() -> None:
    pattern = r"(?i)[^ ]{0,10}@[a-z]+"
    regex = re2.compile(pattern)
    text = "say ééééé€€€€ß@mail now"
    data = text.encode()
    assert list(iter_spans(regex, text, data, literal_lead(pattern))) == [(4, 19)]
