"""The Enforcer end to end without a server: limits, sanctions, ladders, approvals, monitor mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_firewall.audit import AuditLog
from llm_firewall.domain import Finding, Identity
from llm_firewall.enforce.actions import Enforcer
from llm_firewall.enforce.memory_store import MemoryStore
from llm_firewall.enforce.state import Sanction
from llm_firewall.policy.decide import decide
from llm_firewall.policy.model import Action, load_policy

T0 = 1_700_000_000.0
ALICE = Identity(ip="203.0.113.7", user="alice", session="s-1")


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
async def env(tmp_path: Path):
    clock = Clock()
    store = MemoryStore(tmp_path / "state")
    audit = AuditLog(None, clock=clock)
    notes: list = []

    async def notifier(action, alert):
        notes.append((action.params.get("target"), alert.get("alert_id")))

    enforcer = Enforcer(store, audit, clock=clock, notifier=notifier)
    yield enforcer, clock, notes
    await audit.close()
    await store.close()


def finding(threat: str, severity: str, fp: float = 0.05) -> Finding:
    return Finding(rule_id="R-1", title="attack", threat=threat, severity=severity, fp_probability=fp)


async def offend(enforcer, policy, identity, threat, severity, alert_id, fp=0.05):
    decision = decide(policy, [finding(threat, severity, fp)], identity)
    return decision, await enforcer.apply(decision, identity, {"alert_id": alert_id, "title": "attack"}, policy)


async def test_prompt_injection_limits_the_client_to_5_per_120s(env):
    enforcer, clock, _ = env
    policy = load_policy("production")
    assert await enforcer.check(ALICE, policy) is None
    decision, results = await offend(enforcer, policy, ALICE, "prompt_injection", "high", "al-1")
    assert decision.blocked
    assert {r["action"]: r["status"] for r in results} == {"block_request": "done", "rate_limit": "done"}
    outcomes = [await enforcer.check(ALICE, policy) for _ in range(6)]
    assert outcomes[:5] == [None] * 5
    refusal = outcomes[5]
    assert (refusal.status, refusal.code) == (429, "rate_limit_exceeded")
    assert refusal.retry_after == pytest.approx(24.0)
    other = Identity(ip="198.51.100.1", user="bob")
    assert await enforcer.check(other, policy) is None  # only that client
    clock.now += 3601  # the limit was imposed for an hour
    assert all([await enforcer.check(ALICE, policy) is None for _ in range(6)])


async def test_critical_exfiltration_terminates_session_and_blocks_ip(env):
    enforcer, clock, notes = env
    policy = load_policy("production")
    await offend(enforcer, policy, ALICE, "data_exfiltration", "critical", "al-2")
    same_session_elsewhere = Identity(ip="198.51.100.9", user="alice", session="s-1")
    refusal = await enforcer.check(same_session_elsewhere, policy)
    assert (refusal.status, refusal.code) == (403, "session_terminated")
    same_ip_new_session = Identity(ip="203.0.113.7", user="carol", session="s-2")
    refusal = await enforcer.check(same_ip_new_session, policy)
    assert (refusal.code, refusal.retry_after) == ("ip_blocked", 3600)
    assert notes == [("default", "al-2")]
    clock.now += 3601
    assert await enforcer.check(same_ip_new_session, policy) is None
    assert (await enforcer.check(same_session_elsewhere, policy)).code == "session_terminated"


async def test_system_manipulation_flags_the_session_in_the_audit(env):
    enforcer, _, _ = env
    policy = load_policy("production")
    _, results = await offend(enforcer, policy, ALICE, "system_manipulation", "critical", "al-3")
    assert {r["action"] for r in results} == {"block_request", "rate_limit", "flag_session"}
    flagged = [r for r in enforcer.audit.query(kind="action") if r["record"].get("action") == "flag_session"]
    assert [r["record"]["phase"] for r in flagged] == ["intent", "result"]
    assert flagged[1]["record"]["flagged"] == "s-1"


async def test_benign_false_positive_leaves_the_user_alone(env):
    enforcer, _, _ = env
    policy = load_policy("production")
    for i in range(5):
        decision, results = await offend(enforcer, policy, ALICE, "prompt_injection", "high", f"fp-{i}", fp=0.8)
        assert not decision.blocked and results == []
    assert await enforcer.check(ALICE, policy) is None
    assert await enforcer.store.list_sanctions(T0) == []


async def test_three_injections_in_ten_minutes_suspend_with_growing_durations(env):
    enforcer, clock, _ = env
    policy = load_policy("production")
    for i in range(3):
        _, results = await offend(enforcer, policy, ALICE, "prompt_injection", "high", f"pi-{i}")
        clock.now += 60
    suspension = [r for r in results if r["action"] == "suspend_user"]
    assert suspension and suspension[0]["status"] == "done"
    refusal = await enforcer.check(Identity(ip="192.0.2.55", user="alice"), policy)
    assert refusal.code == "user_suspended" and refusal.retry_after == pytest.approx(900 - 60)

    clock.now += 900  # served; offend again: the second suspension lasts twice as long
    for i in range(3):
        await offend(enforcer, policy, ALICE, "prompt_injection", "high", f"pi-b{i}")
    (s,) = [x for x in await enforcer.store.list_sanctions(clock.now) if x.kind == "user"]
    assert s.level == 2 and s.expires_at - clock.now == 1800


async def test_strikes_spread_beyond_the_window_do_not_suspend(env):
    enforcer, clock, _ = env
    policy = load_policy("production")
    for i in range(4):
        await offend(enforcer, policy, ALICE, "prompt_injection", "high", f"slow-{i}")
        clock.now += 301  # 3 strikes never fall within 10 minutes
    assert not [s for s in await enforcer.store.list_sanctions(clock.now) if s.kind == "user"]


async def test_the_same_alert_applied_twice_acts_once(env):
    enforcer, _, _ = env
    policy = load_policy("production")
    decision = decide(policy, [finding("data_exfiltration", "critical")], ALICE)
    first = await enforcer.apply(decision, ALICE, {"alert_id": "dup"}, policy)
    second = await enforcer.apply(decision, ALICE, {"alert_id": "dup"}, policy)
    assert all(r["status"] == "done" for r in first)
    assert all(r["status"] == "duplicate" for r in second)
    intents = [r for r in enforcer.audit.query(kind="action", limit=1000) if r["record"]["phase"] == "intent"]
    assert len(intents) == len(first)


async def test_medical_suspension_waits_for_approval(env):
    enforcer, clock, _ = env
    policy = load_policy("medical")
    for i in range(3):
        _, results = await offend(enforcer, policy, ALICE, "prompt_injection", "high", f"m-{i}")
    (pending,) = [r for r in results if r["action"] == "suspend_user"]
    assert pending["status"] == "pending"
    assert (await enforcer.check(Identity(ip="192.0.2.1", user="alice"), policy)) is None
    (approval,) = await enforcer.store.list_approvals("pending")
    assert approval.action.subject == "alice" and approval.alert_id == "m-2"

    clock.now += 120
    done = await enforcer.approve(approval.id, "admin@example")
    assert done["status"] == "done" and done["approval_status"] == "approved"
    refusal = await enforcer.check(Identity(ip="192.0.2.1", user="alice"), policy)
    assert refusal.code == "user_suspended" and refusal.retry_after == pytest.approx(900)  # counted from approval
    assert await enforcer.approve(approval.id, "admin@example") is None  # decided once
    (record,) = enforcer.audit.query(kind="approval_decided")
    assert record["record"]["decided_by"] == "admin@example" and record["record"]["decided_at"] == T0 + 120


async def test_denied_approval_is_never_executed(tmp_path: Path, env):
    enforcer, _, _ = env
    (tmp_path / "p.yaml").write_text("name: p\nresponses:\n  - when: {threat: data_exfiltration}\n"
                                     "    do: [block_request, {block_ip: {duration: permanent}}]\napproval_required: [permanent]\n")
    policy = load_policy("p", tmp_path)
    _, results = await offend(enforcer, policy, ALICE, "data_exfiltration", "critical", "perm-1")
    (pending,) = [r for r in results if r["status"] == "pending"]
    denied = await enforcer.deny(pending["approval_id"], "admin")
    assert denied["status"] == "denied"
    assert await enforcer.check(ALICE, policy) is None
    assert await enforcer.store.list_approvals("pending") == []


async def test_monitor_mode_enforces_nothing_and_audits_every_would_be_action(tmp_path: Path, env):
    enforcer, _, _ = env
    (tmp_path / "m.yaml").write_text("name: m\nextends: production\nmode: monitor\n")
    policy = load_policy("m", tmp_path)
    for i in range(3):
        decision, results = await offend(enforcer, policy, ALICE, "prompt_injection", "critical", f"mon-{i}")
        assert not decision.blocked
    await offend(enforcer, policy, ALICE, "data_exfiltration", "critical", "mon-x")
    assert await enforcer.check(ALICE, policy) is None
    assert await enforcer.store.list_sanctions(T0) == []
    would = {r["record"]["action"] for r in enforcer.audit.query(kind="action", limit=1000)}
    assert {"would_block_request", "would_rate_limit", "would_suspend_user", "would_block_ip",
            "would_terminate_session"} <= would
    assert all(r["record"]["phase"] == "would" for r in enforcer.audit.query(kind="action", limit=1000))


async def test_decision_and_actions_are_audited_in_order(env):
    enforcer, _, _ = env
    policy = load_policy("production")
    await offend(enforcer, policy, ALICE, "data_exfiltration", "critical", "ord-1")
    rows = enforcer.audit.query(alert_id="ord-1", limit=100)
    assert rows[0]["kind"] == "decision"
    seen: dict[str, list[str]] = {}
    for row in rows[1:]:
        seen.setdefault(row["record"]["action"], []).append(row["record"]["phase"])
    assert seen["block_ip"] == ["intent", "result"] and seen["terminate_session"] == ["intent", "result"]
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)


async def test_admin_release_lifts_a_sanction(env):
    enforcer, _, _ = env
    policy = load_policy("production")
    await enforcer.store.add_sanction(Sanction("ip", ALICE.ip, "manual", T0, None))
    assert (await enforcer.check(ALICE, policy)).retry_after is None
    assert await enforcer.release("ip", ALICE.ip, "admin")
    assert await enforcer.check(ALICE, policy) is None


async def test_sanctions_survive_a_restart_of_the_enforcer(tmp_path: Path):
    clock = Clock()
    policy = load_policy("production")
    store, audit = MemoryStore(tmp_path), AuditLog(tmp_path, clock=clock)
    enforcer = Enforcer(store, audit, clock=clock)
    await offend(enforcer, policy, ALICE, "data_exfiltration", "critical", "rs-1")
    await store.close(), await audit.close()
    store, audit = MemoryStore(tmp_path), AuditLog(tmp_path, clock=clock)
    enforcer = Enforcer(store, audit, clock=clock)
    assert (await enforcer.check(Identity(ip=ALICE.ip), policy)).code == "ip_blocked"
    assert audit.stats()["gap_free"] and audit.query(alert_id="rs-1")
    await store.close(), await audit.close()


class _UnreachableStore(MemoryStore):
    """Stands in for a Redis that does not answer."""

    async def active_sanction(self, identity, now):
        raise ConnectionError("store down")

    async def hit(self, bucket, limit, window_s, now, cost=1):
        raise ConnectionError("store down")


async def test_store_failures_follow_the_fail_modes(tmp_path: Path):
    clock = Clock()
    audit = AuditLog(None)
    enforcer = Enforcer(_UnreachableStore(None), audit, clock=clock)
    refusal = await enforcer.check(ALICE, load_policy("production"))
    assert (refusal.status, refusal.code) == (503, "enforcement_unavailable")
    (tmp_path / "o.yaml").write_text("name: o\nextends: production\nfail_modes: {store: open}\n")
    assert await enforcer.check(ALICE, load_policy("o", tmp_path)) is None  # and rate limits fail open
    await audit.close()


async def test_a_sanction_on_a_named_id_is_held_by_its_scope_and_released_with_it(env) -> None:
    """What the SOC's remediator does too: a suspension of a scoped user (the id a client named,
    scoped to its address) is also recorded on the address, so another id from there is refused,
    the same id from elsewhere is not, and releasing the user releases the address's record."""
    enforcer, clock, _ = env
    policy = load_policy("production")
    bob_here = Identity(ip="203.0.113.9", user="bob@203.0.113.9", session="s@203.0.113.9", scope="203.0.113.9")
    result = await enforcer.execute(Action("suspend_user", {"duration_s": 900.0}, bob_here.user), bob_here, "al-9", "test")
    assert result["status"] == "done" and result["anchor"] == "*@203.0.113.9"
    carol_here = Identity(ip="203.0.113.9", user="carol@203.0.113.9", scope="203.0.113.9")
    assert (await enforcer.check(carol_here, policy)).code == "user_suspended"
    assert (await enforcer.check(Identity(ip="203.0.113.9", scope="203.0.113.9"), policy)).code == "user_suspended"
    bob_elsewhere = Identity(ip="198.51.100.4", user="bob@198.51.100.4", scope="198.51.100.4")
    assert await enforcer.check(bob_elsewhere, policy) is None
    assert await enforcer.release("user", "bob@203.0.113.9", "admin")
    assert await enforcer.check(carol_here, policy) is None


async def test_a_range_block_of_an_ipv6_client_covers_the_networks_inside_it(env):
    enforcer, _, _ = env
    policy = load_policy("production")
    client = Identity(ip="2001:db8:1:2::/64")  # an IPv6 client as counted: its /64
    action = Action("block_ip_range", {"prefix_v6": 48, "duration_s": 600.0}, client.ip)
    result = await enforcer.execute(action, client, "al-v6", "range")
    assert result["key"] == "2001:db8:1::/48"
    for inside in ("2001:db8:1:2::/64", "2001:db8:1:ff::/64", "2001:db8:1:2::5"):
        refusal = await enforcer.check(Identity(ip=inside), policy)
        assert refusal is not None and refusal.code == "ip_blocked", inside
    assert await enforcer.check(Identity(ip="2001:db8:2::/64"), policy) is None


@pytest.mark.parametrize("ladder", ["suspend_user", "terminate_session", "isolate_agent"])
async def test_offences_under_ever_new_keys_climb_the_ladder_of_their_address(env, tmp_path, ladder):
    enforcer, _, _ = env
    (tmp_path / "p.yaml").write_text(
        "name: p\nextends: production\nescalations:\n"
        f"  - {{count: [prompt_injection], strikes: 2, within: 10m, do: {ladder}, for: 15m}}\n")
    policy = load_policy("p", tmp_path)

    def keyed(n: int) -> Identity:
        return Identity(ip="198.51.100.40", api_key_hash=f"key:{n:016x}", scope=f"key:{n:016x}")

    for n in range(2):
        await offend(enforcer, policy, keyed(n), "prompt_injection", "high", f"rot-{ladder}-{n}")
    refusal = await enforcer.check(keyed(99), policy)  # a key never seen, from that address
    assert refusal is not None and refusal.status == 403, refusal
    other = Identity(ip="198.51.100.41", api_key_hash="key:00000000000000ff", scope="key:00000000000000ff")
    assert await enforcer.check(other, policy) is None  # another address is served
