from llm_firewall.soc.analyst import Analyst
from llm_firewall.soc.builder import Builder
from llm_firewall.soc.pipeline import SocPipeline


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_repeated_rate_limit_hits_raise_one_abuse_alert_per_cooldown():
    clock = Clock()
    b = Builder(clock=clock, abuse_limit=3, abuse_window_s=60, cooldown_s=300)
    signal = {"type": "request", "identity": {"ip": "192.0.2.4", "user": "bob"}, "status": 429}
    out = [b.handle(signal) for _ in range(10)]
    alerts = [a for batch in out for a in batch]
    assert len(alerts) == 1
    (alert,) = alerts
    assert alert["threat"] == "rate_limit_abuse" and alert["recommendation"] == "block"
    assert alert["identity"] == {"user": "bob", "ip": "192.0.2.4"}
    clock.now += 301
    assert [a for _ in range(4) for a in b.handle(signal)]  # next cooldown: fires again


def test_hits_spread_beyond_the_window_do_not_count_as_abuse():
    clock = Clock()
    b = Builder(clock=clock, abuse_limit=3, abuse_window_s=60)
    for _ in range(10):
        assert b.handle({"type": "request", "identity": {"ip": "192.0.2.5"}, "outcome": "rate_limited"}) == []
        clock.now += 30


def test_bursts_are_per_identity():
    clock = Clock()
    b = Builder(clock=clock, burst_limit=5, burst_window_s=10)
    calm = [a for i in range(20) for a in b.handle({"type": "request", "identity": {"ip": f"192.0.2.{i}"}})]
    busy = [a for _ in range(20) for a in b.handle({"type": "request", "identity": {"ip": "198.51.100.1"}})]
    assert calm == []
    assert len(busy) == 1 and busy[0]["category"] == "burst" and busy[0]["recommendation"] == "investigate"


def test_incident_groups_by_session_and_corroboration_settles_investigate():
    clock = Clock()
    a = Analyst(clock=clock, corroborate_after=3, window_s=600)
    b = Builder(clock=clock)

    def alert(i):
        return b.normalise_alert({"alert_id": f"x{i}", "threat": "prompt_injection", "severity": "medium",
                                  "fp_probability": 0.5, "identity": {"ip": f"192.0.2.{i}", "session": "s9"},
                                  "soc_actions": ["terminate_session"]})

    decisions = []
    for i in range(4):
        al = alert(i)
        decisions.append(a.decide(al, a.incident_for(al)))
    assert [d.recommendation for d in decisions] == ["investigate", "investigate", "block", "block"]
    assert len({d.incident.incident_id for d in decisions}) == 1
    assert decisions[2].playbook is not None and decisions[2].playbook.actions[0].subject == {"session": "s9"}
    assert decisions[3].playbook is None  # the incident already asked for this action
    clock.now += 601
    al = alert(9)
    assert a.incident_for(al).alert_count == 1  # window passed: a new incident


def test_high_fp_alert_is_monitored_without_a_playbook():
    a = Analyst()
    al = Builder().normalise_alert({"threat": "prompt_injection", "severity": "high", "fp_probability": 0.9,
                                    "identity": {"ip": "192.0.2.1"}, "soc_actions": [{"block_ip": {}}]})
    d = a.decide(al, a.incident_for(al))
    assert d.recommendation == "monitor" and d.playbook is None


async def test_abuse_alert_from_traffic_reaches_enforcement_and_the_page(enforcement, wait_for):
    seen: list[dict] = []
    soc = SocPipeline(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                      on_alert=seen.append,
                      builder=Builder(abuse_limit=5, abuse_actions=[{"block_ip": {"duration": "15m"}}]))
    await soc.start()
    try:
        for _ in range(20):
            assert soc.submit({"type": "request", "identity": {"ip": "203.0.113.40"}, "status": 429})
        await wait_for(lambda: len(enforcement.executed()) == 1)
    finally:
        await soc.stop()
    (ban,) = enforcement.executed()
    assert ban.kind == "block_ip" and ban.params == {"duration_s": 900.0}
    assert [a["threat"] for a in seen if a["type"] == "soc_alert"] == ["rate_limit_abuse"]


async def test_notification_to_a_dead_target_is_dead_lettered_in_the_audit(unused_url, enforcement, wait_for):
    soc = SocPipeline(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                      notify_targets=[f"{unused_url}/hooks/secret-path"], notify_fmt="slack")
    soc.notifier.base_s = soc.notifier.max_s = 0.0  # no need to wait between attempts here
    await soc.start()
    try:
        assert soc.submit({"type": "alert", "threat": "data_exfiltration", "severity": "critical",
                           "fp_probability": 0.1, "identity": {"ip": "192.0.2.200"},
                           "soc_actions": [{"block_ip": {"duration": "1h"}}]})
        await wait_for(lambda: any(k == "soc.notify.dead_letter" for k, _ in enforcement.audit))
        await wait_for(lambda: soc.status()["remediator"]["failed"] == 1)
    finally:
        await soc.stop()
    assert len(enforcement.executed("block_ip")) == 1  # the ban did not wait for or depend on the webhook
    (dead,) = [r for k, r in enforcement.audit if k == "soc.notify.dead_letter"]
    assert "secret-path" not in str(dead) and dead["error"]
    assert soc.notifier.counts["attempts"] == soc.notifier.attempts


async def test_slow_webhook_does_not_hold_up_the_next_ban(receiver, enforcement, wait_for):
    receiver.status = 503
    soc = SocPipeline(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                      notify_targets=[receiver.url], stop_timeout_s=0.2)
    soc.notifier.base_s = soc.notifier.max_s = 30.0  # the first notification backs off for a long time
    await soc.start()
    try:
        for i, ip in enumerate(["192.0.2.31", "192.0.2.32"]):
            soc.submit({"type": "alert", "alert_id": f"n{i}", "threat": "data_exfiltration", "severity": "critical",
                        "fp_probability": 0.1, "identity": {"ip": ip}, "soc_actions": [{"block_ip": {}}]})
        await wait_for(lambda: len(enforcement.executed("block_ip")) == 2)
        assert soc.status()["notifications_inflight"] >= 1
    finally:
        await soc.stop()  # bounded: pending deliveries are cancelled
    assert soc.status()["notifications_inflight"] == 0
