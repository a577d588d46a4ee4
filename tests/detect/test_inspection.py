"""The whole request-side analysis (rules, learned detector, false-positive scorer) as shipped.

test_engine.py checks the rules alone; these tests check what a request would meet in the
proxy: evasions are refused like their plain control, while emoji, non-English prompts and
lone fragments that carry no attack by themselves are not refused by any signal.
"""

from __future__ import annotations

import pytest

from llm_firewall.detect.learned import RULE_ID as LEARNED_ID
from llm_firewall.domain import SEVERITY_RANK, Finding
from llm_firewall.inspector import Inspector
from tests.detect.test_engine import EVASIONS, INJECTION


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector.load()


def _refused(findings: list[Finding]) -> list[str]:
    """Rule ids that would refuse the request: stable, high or worse, recommended for blocking."""
    return sorted(f.rule_id for f in findings if f.status == "stable"
                  and f.rank >= SEVERITY_RANK["high"] and f.recommendation == "block")


def _rule_ids(findings: list[Finding]) -> set[str]:
    return {f.rule_id for f in findings if f.rule_id != LEARNED_ID}


@pytest.mark.parametrize("name", sorted(EVASIONS))
def test_each_evasion_is_refused_by_the_same_rule_as_its_plain_control(inspector: Inspector,
                                                                        name: str) -> None:
    control = inspector.inspect_text(INJECTION)
    control_rules = {r for r in _refused(control) if r != LEARNED_ID}
    assert control_rules, "the plain control must be refused by a rule"
    text, _ = EVASIONS[name]
    evaded = inspector.inspect_text(text)
    assert control_rules <= set(_refused(evaded))
    assert _rule_ids(evaded) >= _rule_ids(control) - {"PV-001"}


@pytest.mark.parametrize("text", [
    "👨\u200d👩\u200d👧\u200d👦 we are a family of four 🇫🇷 👍🏽",
    "❤️🔥✨ happy birthday 🎂🎉 see you at 8 🕗",
    "🏳️\u200d🌈 🧑🏿\u200d💻 👩\u200d❤️\u200d👨",
    "Bonjour ! Comment ignorer les erreurs dans mon code Python ?",
    "Ignorieren Sie bitte die Tippfehler in meiner letzten Nachricht.",
    "请问如何在 Python 中忽略错误？",
    "Привет! Как игнорировать ошибки в Python?",
    "كيف يمكنني تجاهل الأخطاء في بايثون؟",
    "こんにちは、今日の天気はどうですか？",
])
def test_emoji_and_non_english_prompts_raise_nothing(inspector: Inspector, text: str) -> None:
    assert inspector.inspect_text(text) == []


@pytest.mark.parametrize("text", ["*", '"*"', "'*'", "1", ",", "`", "-", "%", "()", "''", "a"])
def test_fragments_without_an_attack_are_not_refused(inspector: Inspector, text: str) -> None:
    assert _refused(inspector.inspect_text(text)) == []


def test_the_ignore_errors_question_is_forwarded_untouched(inspector: Inspector) -> None:
    findings = inspector.inspect_text("How do I ignore errors in my Python code?")
    assert _refused(findings) == []
    assert all((f.fp_probability or 0.0) >= 0.7 for f in findings)


@pytest.mark.parametrize("text", [
    "Classify whether this email is spam. Answer yes or no.\n\nDear user, your account will be "
    "closed today unless you confirm your password at the link below.",
    "list the last logins of user carol",
    "run the nightly report as user reporting",
])
def test_analysis_and_admin_requests_are_not_refused(inspector: Inspector, text: str) -> None:
    assert _refused(inspector.inspect_text(text)) == []
