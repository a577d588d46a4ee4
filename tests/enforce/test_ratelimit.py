"""Rate-limit arithmetic with an injected clock: N per window, retry-after, no charge for refusals."""

from __future__ import annotations

import pytest

from llm_firewall.enforce.memory_store import MemoryStore
from llm_firewall.enforce.ratelimit import gcra


def run(limit: int, window: float, times: list[float]):
    tat, out = None, []
    for now in times:
        new, result = gcra(tat, limit, window, now)
        if new is not None:
            tat = new
        out.append(result)
    return out


def test_five_per_120s_admits_five_then_refuses_with_retry_after():
    results = run(5, 120, [0, 1, 2, 3, 4, 5])
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert [r.remaining for r in results[:5]] == [4, 3, 2, 1, 0]
    assert results[5].retry_after == pytest.approx(19.0)  # one slot frees every 24 s
    assert results[5].limit == 5


def test_capacity_returns_at_the_advertised_time_and_refusals_cost_nothing():
    results = run(5, 120, [0] * 5 + [10, 11, 12, 23.9, 24.0, 24.1])
    assert [r.allowed for r in results[5:]] == [False, False, False, False, True, False]


def test_an_idle_client_gets_its_full_burst_back():
    results = run(3, 60, [0, 0, 0, 1000, 1000, 1000, 1000])
    assert [r.allowed for r in results] == [True, True, True, True, True, True, False]


async def test_store_buckets_are_independent():
    store = MemoryStore(None)
    for _ in range(2):
        assert (await store.hit("a", 2, 10, 100.0)).allowed
    assert not (await store.hit("a", 2, 10, 100.0)).allowed
    assert (await store.hit("b", 2, 10, 100.0)).allowed


def test_a_hit_can_cost_several_units_and_an_oversized_one_takes_a_full_allowance():
    # 100 KiB per 60 s: 40 + 40 fit, the next 40 waits until 20 KiB have come back (12 s)
    tat, results = None, []
    for now, cost in [(0, 40), (0, 40), (0, 40), (12.0, 40), (12.0, 1)]:
        new, result = gcra(tat, 100, 60, now, cost)
        tat = new if new is not None else tat
        results.append(result)
    assert [r.allowed for r in results] == [True, True, False, True, False]
    assert results[2].retry_after == pytest.approx(12.0)
    assert results[0].remaining == 60
    # a single body above the whole allowance is charged as the allowance: admitted when idle
    new, big = gcra(None, 100, 60, 0, 5000)
    assert big.allowed and big.remaining == 0 and new == pytest.approx(60.0)
    assert not gcra(new, 100, 60, 0.5, 1)[1].allowed  # nothing back yet (one KiB every 0.6 s)
    assert gcra(new, 100, 60, 0.6, 1)[1].allowed
