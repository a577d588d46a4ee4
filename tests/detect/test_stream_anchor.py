"""Stream anchors: where a response rule's match can start, so a stream guard need not hold a
full window of text in which no match can begin."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from llm_firewall.detect.engine import Engine
from llm_firewall.detect.rules import RuleError, default_rules_dir, load_rules

RESPONSE_RULE = """\
id: T-100
title: Test key
threat: secret_leakage
severity: critical
category: api_key
applies_to: {direction: response}
stream_anchor: 'tk-'
match:
  any:
    - regex: '\\btk-[a-z0-9]{12,40}'
falsepositives: [none]
tests:
  match: ["the key is tk-abcdef0123456789"]
  no_match: ["tk- is a prefix"]
"""


@pytest.fixture(scope="module")
def shipped() -> Engine:
    return Engine(load_rules(default_rules_dir()))


def _rules(tmp_path: Path, *bodies: str) -> Path:
    for i, body in enumerate(bodies):
        (tmp_path / f"r{i}.yaml").write_text(textwrap.dedent(body), encoding="utf-8")
    return tmp_path


def _response_rules(engine: Engine):
    return [r for r in engine.rules if r.applies("response")]


def test_every_shipped_response_rule_declares_an_anchor(shipped: Engine) -> None:
    missing = [r.id for r in _response_rules(shipped) if r.stream_anchor is None]
    assert missing == []
    assert shipped.stream_anchor("response") is not None
    assert 1 <= shipped.stream_anchor_width("response") <= 64


def test_union_anchors_every_response_rule_example_at_or_before_its_match(shipped: Engine) -> None:
    union = shipped.stream_anchor("response")
    checked = 0
    for rule in _response_rules(shipped):
        for sample in rule.tests_match:
            span = rule.find(sample)
            if span is None:  # only a normalised view matches: the non-ASCII anchor covers it
                assert not sample.isascii(), (rule.id, sample)
                continue
            first = union.search(sample)
            assert first is not None and first.start() <= span[0], (rule.id, sample)
            own = rule.stream_anchor.regex.search(sample)
            assert own is not None and own.start() <= span[0], (rule.id, sample)
            checked += 1
    assert checked >= 20


def test_secrets_in_answers_are_anchored_where_they_begin(shipped: Engine) -> None:
    union = shipped.stream_anchor()
    text = "Sure, here it is: sk-proj-AbCdEfGhIjKlMnOpQrStUvWx1234 and that's all."
    assert union.search(text).start() <= text.index("sk-proj")
    key = "-----BEGIN OPENSSH PRIVATE KEY-----"
    assert union.search("Paste this: " + key).start() <= len("Paste this: ")


def test_ordinary_prose_has_no_anchor(shipped: Engine) -> None:
    union = shipped.stream_anchor()
    prose = ("Paris is the capital of France. It is known for its museums, its cafes and the "
             "river that runs through it.")
    assert union.search(prose) is None


def test_non_ascii_text_counts_as_an_anchor(shipped: Engine) -> None:
    union = shipped.stream_anchor()
    fullwidth = "Here: ｓｋ－ｐｒｏｊ－ＡｂＣｄＥｆＧｈＩｊＫｌＭｎＯｐＱｒＳｔＵｖＷｘ１２３４"
    assert union.search(fullwidth).start() == len("Here: ")
    assert any(f.rule_id == "SL-001" for f in shipped.scan_text(fullwidth, "response", "response"))
    assert union.search("Café au lait") is not None


def test_no_union_when_an_enabled_response_rule_lacks_an_anchor(tmp_path: Path) -> None:
    without = RESPONSE_RULE.replace("id: T-100", "id: T-101").replace("stream_anchor: 'tk-'\n", "")
    ruleset = load_rules(_rules(tmp_path, RESPONSE_RULE, without))
    assert Engine(ruleset).stream_anchor("response") is None
    assert Engine(ruleset).stream_anchor_width("response") == 0
    # Disabling the rule without an anchor through a policy override brings the union back.
    engine = Engine(ruleset, overrides={"T-101": {"enabled": False}})
    assert engine.stream_anchor("response").search("x tk-abc").start() == 2


def test_request_direction_has_no_anchor(shipped: Engine) -> None:
    assert shipped.stream_anchor("request") is None
    with pytest.raises(ValueError):
        shipped.stream_anchor("sideways")


def _error(tmp_path: Path, body: str) -> RuleError:
    with pytest.raises(RuleError) as info:
        load_rules(_rules(tmp_path, body))
    return info.value


def test_anchor_on_a_request_rule_is_refused(tmp_path: Path) -> None:
    err = _error(tmp_path, RESPONSE_RULE.replace("direction: response", "direction: request"))
    assert err.rule_id == "T-100" and err.field == "stream_anchor" and err.line == 7
    assert "respon" in err.message


def test_anchor_that_misses_an_example_is_refused(tmp_path: Path) -> None:
    err = _error(tmp_path, RESPONSE_RULE.replace("stream_anchor: 'tk-'", "stream_anchor: 'zzz'"))
    assert err.rule_id == "T-100" and err.field == "tests.match[0]"
    assert "stream_anchor" in err.message


def test_anchor_that_matches_only_after_the_start_is_refused(tmp_path: Path) -> None:
    err = _error(tmp_path, RESPONSE_RULE.replace("stream_anchor: 'tk-'", "stream_anchor: '0123'"))
    assert "at or before" in err.message


@pytest.mark.parametrize("anchor, words", [
    ("'tk-('", "compile"),
    ("'tk-.*'", "characters"),
    ("''", "non-empty"),
])
def test_bad_anchor_patterns_are_refused(tmp_path: Path, anchor: str, words: str) -> None:
    err = _error(tmp_path, RESPONSE_RULE.replace("'tk-'", anchor))
    assert err.field == "stream_anchor" and words in err.message
