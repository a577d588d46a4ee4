"""`prefix_pattern` matches every unfinished beginning of an anchor match, and little else."""

from __future__ import annotations

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.partial import Unsupported, prefix_pattern
from llm_firewall.detect.re2raw import search_span
from llm_firewall.detect.rules import default_rules_dir, load_rules
from llm_firewall.proxy.stream_guard import ENCODED_ANCHOR

ENGINE = Engine(load_rules(default_rules_dir()))
ANCHOR = f"{ENGINE.stream_anchor('response').pattern}|{ENCODED_ANCHOR}"
WHOLE = re2.compile(f"(?:{prefix_pattern(ANCHOR)})")
SAMPLES = [s for r in ENGINE.rules_for("response") for s in r.tests_match]


def is_prefix(text: str) -> bool:
    return WHOLE.fullmatch(text) is not None


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_beginning_of_an_anchor_match_in_a_rule_sample_is_a_prefix(sample: str) -> None:
    span = search_span(re2.compile(ANCHOR), sample)
    assert span is not None
    match = sample[span[0]:span[1]]
    for k in range(len(match) + 1):
        assert is_prefix(match[:k]), match[:k]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["sk-", "AKIA", "-----BEGIN", "eyJ", "postgres", "password =", "%4f", "&#x41;",
                        "\\u00", "![", "render ", "patient ", "a.b@", "ssn", "medical "]), st.data())
def test_cut_anchors_are_prefixes(anchor: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(anchor)))
    assert is_prefix(anchor[:cut])


@pytest.mark.parametrize("text", [",", "hello, ", ". ", "? ", "word ;"])
def test_text_no_anchor_can_grow_from_is_not_a_prefix(text: str) -> None:
    assert not is_prefix(text)


def test_unsupported_syntax_is_reported() -> None:
    with pytest.raises(Unsupported):
        prefix_pattern(r"(a)\1")
