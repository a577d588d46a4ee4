import asyncio

import pytest

from llm_firewall.reliability import ExecutionTracker, MemoryClaimStore
from llm_firewall.soc.pipeline import SocPipeline
from llm_firewall.soc.playbook import Playbook, PlaybookError, normalise_action, validate_action
from llm_firewall.soc.remediator import Remediator


def ban_playbook(ip: str = "203.0.113.7") -> Playbook:
    identity = {"ip": ip, "session": "s-1"}
    actions = [normalise_action({"block_ip": {"duration": "1h"}}, identity),
               normalise_action("terminate_session", identity)]
    return Playbook(incident_id="inc-1", alert_id="a-1", actions=actions, identity=identity)


async def test_same_playbook_twice_and_raced_executes_once(enforcement):
    r = Remediator(remediate=enforcement.remediate, audit_append=enforcement.audit_append)
    pb = ban_playbook()
    twin = Playbook.from_dict(pb.to_dict())  # the same playbook arriving a second time
    assert twin.playbook_id == pb.playbook_id
    first = await r.execute(pb)
    again = await r.execute(twin)
    raced = await asyncio.gather(*(r.execute(ban_playbook()) for _ in range(5)))
    assert [x["status"] for x in first] == ["done", "done"]
    assert [x["status"] for x in again] == ["duplicate", "duplicate"]
    assert all(x["status"] == "duplicate" for res in raced for x in res)
    assert [(a.kind, a.subject, a.params) for a in enforcement.executed()] == [
        ("block_ip", {"ip": "203.0.113.7"}, {"duration_s": 3600.0}),
        ("terminate_session", {"session": "s-1"}, {"duration_s": 86400.0}),  # default, never permanent
    ]
    kinds = [k for k, _ in enforcement.audit]
    assert kinds == ["soc.action.intent", "soc.action.result"] * 2


async def test_two_replicas_racing_on_a_shared_store_execute_once(enforcement):
    store = MemoryClaimStore()
    a = Remediator(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                   tracker=ExecutionTracker(store=store))
    b = Remediator(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                   tracker=ExecutionTracker(store=store))
    await asyncio.gather(a.execute(ban_playbook()), b.execute(ban_playbook()))
    assert len(enforcement.executed("block_ip")) == 1


async def test_playbook_submitted_twice_through_the_pipeline_executes_once(enforcement, wait_for):
    soc = SocPipeline(remediate=enforcement.remediate, audit_append=enforcement.audit_append)
    await soc.start()
    try:
        pb = ban_playbook("198.51.100.4")
        assert soc.submit({"type": "playbook", "playbook": pb.to_dict()})
        assert soc.submit({"type": "playbook", "playbook": pb.to_dict()})
        await wait_for(lambda: soc.status()["remediator"]["duplicates"] == 2)
    finally:
        await soc.stop()
    assert len(enforcement.executed("block_ip")) == 1


async def test_failed_action_is_audited_and_may_run_again(enforcement):
    attempts = []

    async def flaky(pb):
        attempts.append(pb)
        if len(attempts) == 1:
            raise ConnectionError("state store unavailable")
        return [{"status": "done"}]

    r = Remediator(remediate=flaky, audit_append=enforcement.audit_append)
    pb = Playbook("inc", "a", [normalise_action("suspend_user", {"user": "mallory"})])
    assert (await r.execute(pb))[0]["status"] == "failed"
    assert (await r.execute(pb))[0]["status"] == "done"
    results = [rec for kind, rec in enforcement.audit if kind == "soc.action.result"]
    assert results[0]["status"] == "failed" and "unavailable" in results[0]["error"]


@pytest.mark.parametrize("spec,identity,fragment", [
    ("format_disk", {"ip": "192.0.2.1"}, "not allowed"),
    ({"block_ip": {"duration_s": -5}}, {"ip": "192.0.2.1"}, "duration_s"),
    ({"block_ip": {"duration_s": 60, "cidr": "0.0.0.0/0"}}, {"ip": "192.0.2.1"}, "unknown parameter 'cidr'"),
    ({"rate_limit": {"limit": 5}}, {"ip": "192.0.2.1"}, "missing parameter 'window_s'"),
    ({"block_ip": {"duration": "soon"}}, {"ip": "192.0.2.1"}, "duration"),
    ({"block_ip": {}}, {"ip": "not-an-ip"}, "not an IP"),
    ({"block_ip": {}}, {"ip": "0.0.0.0/0"}, "not an IP"),  # a range is never an address
    ({"block_ip": {}}, {"ip": "2001::/16"}, "not an IP"),
    ("terminate_session", {"ip": "192.0.2.1"}, "exactly one subject"),
])
def test_invalid_actions_are_refused_naming_the_field(spec, identity, fragment):
    with pytest.raises(PlaybookError, match=fragment):
        validate_action(normalise_action(spec, identity))


def test_an_ipv6_clients_counted_network_is_an_address_to_block():
    validate_action(normalise_action({"block_ip": {"duration_s": 60}}, {"ip": "2001:db8:1:2::/64"}))


async def test_rejected_playbook_runs_nothing_and_is_audited(enforcement):
    r = Remediator(remediate=enforcement.remediate, audit_append=enforcement.audit_append)
    bad = Playbook("inc", "a", [normalise_action({"block_ip": {}}, {"ip": "not-an-ip"})])
    out = await r.execute(bad)
    assert out[0]["status"] == "rejected"
    assert enforcement.calls == []
    assert enforcement.audit[0][0] == "soc.playbook.rejected"


async def test_approval_required_actions_are_handed_over_as_pending(enforcement, wait_for):
    soc = SocPipeline(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                      approval_required=["suspend_user"])
    await soc.start()
    try:
        soc.submit({"type": "alert", "threat": "prompt_injection", "severity": "critical",
                    "recommendation": "block", "identity": {"ip": "192.0.2.9", "user": "mallory"},
                    "soc_actions": [{"suspend_user": {"duration": "15m"}}]})
        await wait_for(lambda: soc.status()["remediator"]["pending_approval"] == 1)
    finally:
        await soc.stop()
    (action,) = enforcement.executed()
    assert action.requires_approval and action.subject == {"user": "mallory"}


def test_policy_style_and_policy_model_actions_normalise_to_checked_actions():
    identity = {"ip": "192.0.2.3", "user": "eve", "session": "s-2"}
    rl = normalise_action({"rate_limit": {"limit": 5, "window": "120s", "key": "client", "for": "1h"}}, identity)
    assert rl.subject == {"user": "eve"} and rl.params == {"limit": 5, "window_s": 120.0, "key": "user",
                                                          "duration_s": 3600.0}
    validate_action(rl)

    class PolicyAction:  # the shape of llm_firewall.policy.model.Action
        kind, params, subject = "block_ip_range", {"duration_s": 600.0, "prefix_v4": 24}, "192.0.2.3"

        def to_dict(self):
            return {"kind": self.kind, "params": dict(self.params), "subject": self.subject}

    rng = normalise_action(PolicyAction(), identity)
    assert rng.subject == {"ip": "192.0.2.3"}
    validate_action(rng)


def test_inline_only_actions_are_left_to_the_proxy():
    from llm_firewall.soc.analyst import Analyst
    from llm_firewall.soc.builder import Builder

    a = Analyst()
    al = Builder().normalise_alert({"threat": "prompt_injection", "severity": "high", "fp_probability": 0.1,
                                    "identity": {"ip": "192.0.2.1", "session": "s"},
                                    "soc_actions": ["block_request", "redact", "terminate_session"]})
    d = a.decide(al, a.incident_for(al))
    assert [x.kind for x in d.playbook.actions] == ["terminate_session"]
    assert a.counts["invalid_actions"] == 0
