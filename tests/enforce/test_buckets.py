"""Rate-limit buckets in memory: limits hold, recovered buckets go, the table stays bounded."""

from __future__ import annotations

from llm_firewall.enforce.buckets import Buckets

T0 = 1_700_000_000.0


def test_a_client_over_its_limit_stays_limited_while_many_others_come_and_go() -> None:
    b = Buckets(max_entries=100_000)
    assert all(b.hit("heavy", 3, 60, T0).allowed for _ in range(3))
    for i in range(5000):  # 5,000 one-off clients over the next 10 s
        assert b.hit(f"client-{i}", 120, 60, T0 + i * 0.002).allowed
    refused = b.hit("heavy", 3, 60, T0 + 10)
    assert not refused.allowed and 9 < refused.retry_after <= 10
    assert b.hit("heavy", 3, 60, T0 + 20).allowed  # one unit back after 20 s


def test_recovered_buckets_are_dropped_as_traffic_goes_on() -> None:
    b = Buckets(max_entries=100_000)
    for i in range(10_000):  # a burst: 10,000 clients within 0.1 s, each recovers 0.5 s later
        b.hit(f"burst-{i}", 120, 60, T0 + i * 0.00001)
    assert len(b) == 10_000
    for i in range(12_000):  # then ordinary traffic from other clients, one hit each
        b.hit(f"later-{i}", 120, 60, T0 + 100 + i * 0.001)
    # about 500 of the later buckets are still recovering; the burst's are all gone
    assert len(b) < 1000 and not any(k.startswith("burst-") for k in b._tat)


def test_above_max_entries_the_least_recently_hit_bucket_is_evicted_and_counted() -> None:
    b = Buckets(max_entries=10)
    for i in range(40):
        b.hit(f"bucket-{i}", 5, 60, T0)  # none recovers: all hit at the same instant
    assert len(b) == 10 and b.evicted == 30
    assert not b.hit("bucket-39", 1, 60, T0).allowed  # the newest kept its state


def test_a_refused_hit_changes_nothing_and_drop_forgets_a_bucket() -> None:
    b = Buckets(max_entries=10)
    assert b.hit("x", 1, 60, T0).allowed
    assert not b.hit("x", 1, 60, T0 + 1).allowed
    assert b.hit("x", 1, 60, T0 + 60).allowed  # the refusal did not push the recovery back
    b.drop("x")
    assert b.hit("x", 1, 60, T0 + 61).allowed and len(b) == 1
