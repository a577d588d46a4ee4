import asyncio
import inspect

import pytest

from llm_firewall.soc.bus import BoundedQueue
from llm_firewall.soc.pipeline import SocPipeline


async def test_drop_oldest_keeps_the_newest_items_and_counts():
    q = BoundedQueue("q", 3, strategy="drop_oldest")
    assert all(q.put_nowait(i) for i in range(5))
    assert [q.get_nowait() for _ in range(3)] == [2, 3, 4]
    s = q.stats()
    assert s["drops"] == 2 and s["high_water"] == 3 and s["depth"] == 0


async def test_drop_newest_refuses_new_items():
    q = BoundedQueue("q", 2, strategy="drop_newest")
    assert [q.put_nowait(i) for i in range(4)] == [True, True, False, False]
    assert [await q.get(), await q.get()] == [0, 1]
    assert q.stats()["drops"] == 2


async def test_block_waits_for_room_then_drops_after_timeout():
    q = BoundedQueue("q", 1, strategy="block")
    assert await q.put("a")
    assert not q.put_nowait("b")  # put_nowait never waits
    assert not await q.put("c", timeout=0.01)  # nobody consumes: dropped after the wait
    consumer = asyncio.create_task(q.get())
    assert await q.put("d", timeout=5)  # room appears while waiting
    assert await consumer == "a"
    assert q.stats()["drops"] == 2


async def test_saturation_alert_once_per_episode_with_injected_clock():
    now = [0.0]
    alerts = []
    q = BoundedQueue("q", 10, saturation_after_s=5, clock=lambda: now[0],
                     on_saturation=lambda name, stats: alerts.append((name, stats["depth"])))
    for i in range(8):
        q.put_nowait(i)  # 80 %
    now[0] = 4.0
    q.check()
    assert alerts == []
    now[0] = 5.0
    q.check()
    q.put_nowait(9)
    assert alerts == [("q", 8)]
    while not q.empty():
        q.get_nowait()
    for i in range(8):
        q.put_nowait(i)
    now[0] = 20.0
    q.check()
    assert len(alerts) == 2  # a new episode after it drained


def test_unknown_strategy_is_refused_with_its_name():
    with pytest.raises(ValueError, match="drop_sideways"):
        BoundedQueue("q", 1, strategy="drop_sideways")


async def test_burst_of_10000_alerts_with_slow_consumer_drops_counted_and_submit_never_waits(enforcement):
    enforcement.delay = 0.05  # a slow enforcement layer behind the SOC
    alerts: list[dict] = []
    soc = SocPipeline(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                      on_alert=alerts.append, queue_size=1000, saturation_after_s=0.0, stop_timeout_s=0.5)
    assert not inspect.iscoroutinefunction(soc.submit)
    await soc.start()
    try:
        results = []
        for i in range(10_000):
            results.append(soc.submit({
                "type": "alert", "alert_id": f"a{i}", "threat": "prompt_injection", "severity": "high",
                "recommendation": "block", "identity": {"ip": f"198.51.{i // 250}.{i % 250}"},
                "soc_actions": [{"block_ip": {"duration_s": 60}}],
            }))
        status = soc.status()
        # the loop above never yielded: the consumer has not taken anything yet
        assert status["builder"]["events"] == 0
        assert status["submitted"] == 10_000
        intake = status["queues"]["intake"]
        assert intake["depth"] == 1000 and intake["high_water"] == 1000
        assert intake["drops"] == 9000  # drop_oldest: every submit accepted, 9000 old ones evicted
        assert all(results)
        assert any(a.get("category") == "queue_saturated" for a in alerts)
        await asyncio.sleep(0.2)  # the pipeline keeps working through the backlog meanwhile
        assert soc.status()["builder"]["events"] > 0
    finally:
        await soc.stop()
    assert not soc.running


async def test_drop_newest_pipeline_reports_refused_submits(enforcement):
    soc = SocPipeline(remediate=enforcement.remediate, audit_append=enforcement.audit_append,
                      queue_size=100, queue_strategy="drop_newest")
    results = [soc.submit({"type": "request", "identity": {"ip": "192.0.2.1"}}) for _ in range(10_000)]
    assert results.count(True) == 100 and results.count(False) == 9_900
    assert soc.status()["dropped"] == 9_900
