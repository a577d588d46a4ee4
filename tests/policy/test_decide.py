"""The decision table of each preset: what a finding from a given client leads to."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from llm_firewall.domain import Finding, Identity
from llm_firewall.policy.decide import MAX_TIMED_S, decide, escalation_step, ladder_duration
from llm_firewall.policy.model import load_policy

ALICE = Identity(ip="203.0.113.7", user="alice", session="s-1")
ANON = Identity(ip="203.0.113.8")


def f(threat: str, severity: str, fp: float | None = 0.05, *, rule: str = "R-1", status: str = "stable") -> Finding:
    return Finding(rule_id=rule, title="t", threat=threat, severity=severity, fp_probability=fp, status=status)


def kinds(actions) -> list[str]:
    return [a.kind for a in actions]


@pytest.fixture(scope="module")
def production():
    return load_policy("production")


def test_confident_prompt_injection_is_blocked_and_the_client_limited(production):
    d = decide(production, [f("prompt_injection", "high")], ALICE)
    assert d.blocked and d.mode == "enforce"
    assert kinds(d.actions) == ["block_request", "rate_limit"]
    rate = d.actions[1]
    assert rate.subject == "user:alice"
    assert (rate.params["limit"], rate.params["window_s"]) == (5, 120.0)
    assert d.pending == [] and d.strikes == ["prompt_injection"]
    assert d.matched_rules == ["R-1"]


def test_anonymous_client_is_limited_by_ip(production):
    d = decide(production, [f("prompt_injection", "critical")], ANON)
    assert d.actions[1].subject == "ip:203.0.113.8"


def test_critical_exfiltration_terminates_session_and_blocks_ip_for_an_hour(production):
    d = decide(production, [f("data_exfiltration", "critical", 0.1)], ALICE)
    assert d.blocked
    by_kind = {a.kind: a for a in d.actions}
    assert set(by_kind) == {"block_request", "terminate_session", "block_ip", "notify"}
    assert by_kind["terminate_session"].subject == "s-1"
    assert by_kind["block_ip"].subject == "203.0.113.7"
    assert by_kind["block_ip"].params["duration_s"] == 3600


def test_exfiltration_without_a_session_still_blocks_ip_and_says_why(production):
    d = decide(production, [f("data_exfiltration", "critical", 0.1)], ANON)
    assert "terminate_session" not in kinds(d.actions) and "block_ip" in kinds(d.actions)
    assert any("terminate_session skipped, no session" in r for r in d.reasons)


def test_system_manipulation_blocks_limits_and_flags_the_session(production):
    d = decide(production, [f("system_manipulation", "high")], ALICE)
    assert d.blocked
    assert kinds(d.actions) == ["block_request", "rate_limit", "flag_session"]


@pytest.mark.parametrize(
    "finding, blocked",
    [
        (f("prompt_injection", "high", 0.75), False),  # likely false positive: log only
        (f("prompt_injection", "high", 0.7), False),  # the boundary belongs to "monitor"
        (f("prompt_injection", "high", 0.5), False),  # investigate band: logged for the SOC
        (f("prompt_injection", "high", 0.29), True),
        (f("prompt_injection", "high", None), True),  # not scored yet counts as 0.0
        (f("prompt_injection", "medium", 0.05), False),  # below block severity
        (f("malicious_input", "high", 0.05), True),  # generic: at/above block severity
        (f("prompt_injection", "critical", 0.05, status="experimental"), False),
    ],
)
def test_production_bands(production, finding, blocked):
    d = decide(production, [finding], ALICE)
    assert d.blocked is blocked
    if not blocked:
        assert kinds(d.actions) == ["log"]


def test_likely_false_positive_leaves_no_strike(production):
    d = decide(production, [f("prompt_injection", "high", 0.8)], ALICE)
    assert d.strikes == [] and any("likely false positive" in r for r in d.reasons)


def test_no_findings_no_actions(production):
    d = decide(production, [], ALICE)
    assert not d.blocked and d.actions == [] and d.reasons == []


def test_strongest_finding_wins_and_actions_are_not_repeated(production):
    d = decide(production, [f("prompt_injection", "high", rule="A"), f("data_exfiltration", "critical", rule="B"),
                            f("prompt_injection", "critical", rule="C")], ALICE)
    assert kinds(d.actions).count("block_request") == 1
    assert d.matched_rules == ["B", "C", "A"]
    assert sorted(d.strikes) == ["data_exfiltration", "prompt_injection"]


def _custom(tmp_path: Path, extra: str):
    (tmp_path / "p.yaml").write_text(f"name: p\nextends: {Path(__file__).resolve().parents[2] / 'policies' / 'production.yaml'}\n{extra}")
    return load_policy("p", tmp_path)


def test_allowlisted_identities_are_only_logged(tmp_path: Path):
    p = _custom(tmp_path, "allowlist: {ips: [198.51.100.0/24], users: ['health*']}\n")
    for ident in (Identity(ip="198.51.100.9"), Identity(ip="203.0.113.1", user="healthcheck")):
        d = decide(p, [f("data_exfiltration", "critical")], ident)
        assert not d.blocked and kinds(d.actions) == ["log"] and d.allowlisted and d.strikes == []


def test_rule_overrides_disable_or_reclassify(tmp_path: Path):
    p = _custom(tmp_path, "rule_overrides: {OFF-1: {enabled: false}, LOW-1: {severity: low}, EXP-1: {status: experimental}}\n")
    for rule in ("OFF-1", "LOW-1", "EXP-1"):
        assert not decide(p, [f("prompt_injection", "critical", rule=rule)], ALICE).blocked
    assert decide(p, [f("prompt_injection", "critical", rule="OTHER")], ALICE).blocked


def test_monitor_mode_enforces_nothing_but_records_what_it_would_do(tmp_path: Path):
    p = _custom(tmp_path, "mode: monitor\n")
    d = decide(p, [f("data_exfiltration", "critical")], ALICE)
    assert not d.blocked and d.would_block
    assert kinds(d.actions) == ["log"] and d.pending == []
    assert {"block_request", "terminate_session", "block_ip"} <= set(kinds(d.would_actions))
    assert d.to_dict()["would_block"] is True


def test_permanent_ban_waits_for_approval(tmp_path: Path):
    p = _custom(tmp_path, "responses:\n  - when: {threat: data_exfiltration}\n    do: [block_request, {block_ip: {duration: permanent}}]\n")
    d = decide(p, [f("data_exfiltration", "critical")], ALICE)
    assert d.blocked and kinds(d.actions) == ["block_request"] and kinds(d.pending) == ["block_ip"]


def test_development_refuses_but_never_sanctions():
    p = load_policy("development")
    d = decide(p, [f("data_exfiltration", "critical")], ALICE)
    assert d.blocked and kinds(d.actions) == ["block_request"]
    assert not decide(p, [f("prompt_injection", "medium")], ALICE).blocked
    assert p.escalations == () and p.allow_security_mode_header


def test_medical_masks_health_data_instead_of_refusing():
    p = load_policy("medical")
    d = decide(p, [f("privacy_violation", "high", 0.2)], ALICE)
    assert not d.blocked and d.redact
    assert d.actions[0].params["threats"] == ["privacy_violation"]
    assert decide(p, [f("prompt_injection", "high")], ALICE).blocked
    # An e-mail address or a phone number scores ~0.8 as a false alarm: masked all the same,
    # while an attack finding as doubtful is only logged, as in production.
    assert decide(p, [f("privacy_violation", "low", 0.83)], ALICE).redact
    doubtful = decide(p, [f("prompt_injection", "high", 0.83)], ALICE)
    assert not doubtful.blocked and kinds(doubtful.actions) == ["log"]


def test_financial_masks_account_data_and_refuses_dumps_and_medium_attacks():
    p = load_policy("financial")
    masked = decide(p, [f("privacy_violation", "medium", 0.2)], ALICE)
    assert not masked.blocked and masked.redact
    assert decide(p, [f("privacy_violation", "low", 0.83)], ALICE).redact
    assert kinds(decide(p, [f("malicious_input", "medium", 0.83)], ALICE).actions) == ["log"]
    dump = decide(p, [f("privacy_violation", "high", 0.1)], ALICE)
    assert dump.blocked and "flag_session" in kinds(dump.actions)
    assert decide(p, [f("malicious_input", "medium", 0.1)], ALICE).blocked
    assert not decide(load_policy("production"), [f("malicious_input", "medium", 0.1)], ALICE).blocked


def test_escalation_durations_grow_by_factor_up_to_the_cap(production):
    (ladder,) = production.escalations
    assert [ladder_duration(ladder, n) for n in (1, 2, 3, 4, 7, 20)] == [900, 1800, 3600, 7200, 57600, 86400]
    # a subject sanctioned thousands of times: the power overflows a float, the cap still holds
    assert ladder_duration(ladder, 5000) == 86400
    uncapped = dataclasses.replace(ladder, max_s=None)  # `max: permanent`
    assert ladder_duration(uncapped, 5000) == MAX_TIMED_S and ladder_duration(uncapped, 3) == 3600
    assert escalation_step(ladder, 2, 0, "alice") is None
    action = escalation_step(ladder, 3, 1, "alice")
    assert action.kind == "suspend_user" and action.subject == "alice"
    assert action.params["level"] == 2 and action.params["duration_s"] == 1800


@pytest.mark.parametrize("severity", ["low", "medium"])
def test_a_finding_the_policy_only_logs_is_no_strike(production, severity: str) -> None:
    """An investigate-band hint ("hi there" scored medium by a model) lets the request through;
    four of them must not add up to a suspension of the client."""
    d = decide(production, [f("prompt_injection", severity, fp=0.1)], ALICE)
    assert not d.blocked and kinds(d.actions) == ["log"]
    assert d.strikes == []
