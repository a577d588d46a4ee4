"""Two firewalls on a Redis that dies, then hangs: no request waits much longer than the 100 ms
Redis timeout, rate limits fall back to each replica's local limiter, sanction checks fail closed
on A (the default) and open on B (its policy says so) while sanctions B raised meanwhile are still
enforced by B; once Redis is back both replicas agree again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis.replicas import BENIGN, EXFIL, admin_get, chat, code, poll, start_pair, timed_chat, write_policy
from tests.support.firewall import Firewall

LIMIT = 3
BOUND_S = 2.0  # generous bound on any one request while Redis is away (timeout 0.1 s); figures printed


@pytest.fixture
def pair(fresh_redis, upstream, tmp_path) -> Iterator[tuple[Firewall, Firewall]]:
    closed = write_policy(tmp_path / "closed.yaml", "fail-closed", limit=LIMIT, fail_store="closed")
    opened = write_policy(tmp_path / "open.yaml", "fail-open", limit=LIMIT, fail_store="open")
    yield from start_pair(fresh_redis.url, upstream.base_url, tmp_path, closed, opened)


def outage(a: Firewall, b: Firewall, label: str, offender: str, client: str) -> None:
    """What both replicas do while Redis is unreachable; asserts and prints the slowest request."""
    on_a = [timed_chat(a, BENIGN, f"198.51.100.{i}") for i in range(1, 6)]
    on_b = [timed_chat(b, BENIGN, client) for _ in range(LIMIT + 2)]
    blocked = timed_chat(b, EXFIL, offender, "s-x")
    after = timed_chat(b, BENIGN, offender, "s-y")
    slowest = max(t for *_, t in on_a + on_b + [blocked, after])
    print(f"\nredis {label}: slowest request {slowest * 1000:.0f} ms (timeout 100 ms), "
          f"first request on A {on_a[0][2] * 1000:.0f} ms")
    assert slowest < BOUND_S
    assert {(s, c) for s, c, _ in on_a} == {(503, "enforcement_unavailable")}  # A fails closed
    assert [s for s, _, _ in on_b] == [200] * LIMIT + [429, 429]  # B: open, local limiter
    assert blocked[:2] == (400, "content_policy_violation")
    assert after[:2] == (403, "ip_blocked")  # the block B raised meanwhile is enforced by B
    status = admin_get(b, "/api/soc/status")["store"]
    assert status["redis"] == "down" and status["errors"] >= 1 and status["unreconciled"]


def recovered(a: Firewall, b: Firewall, offender: str) -> None:
    """Both replicas serve again and agree: B's block reached Redis, once."""
    assert poll(lambda: not admin_get(b, "/api/soc/status")["store"]["unreconciled"], timeout=10), \
        "B never pushed what it recorded during the outage"
    assert poll(lambda: chat(a, BENIGN, "192.0.2.200")[0] == 200, timeout=10), "A never recovered"
    assert code(chat(a, BENIGN, offender, "s-z")) == "ip_blocked"
    for fw in (a, b):
        keys = [s["key"] for s in admin_get(fw, "/api/blocks")["blocks"] if s["kind"] == "ip"]
        assert keys.count(offender) == 1
        assert admin_get(fw, "/api/soc/status")["store"]["redis"] == "up"


def test_redis_killed_then_hung(pair, fresh_redis):
    a, b = pair
    assert chat(a, BENIGN, "192.0.2.1")[0] == 200 and chat(b, BENIGN, "192.0.2.1")[0] == 200

    fresh_redis.kill()
    outage(a, b, "killed", offender="203.0.113.150", client="192.0.2.10")
    fresh_redis.start()  # same port, empty (no persistence): B pushes what it recorded
    recovered(a, b, "203.0.113.150")

    fresh_redis.pause()
    try:
        outage(a, b, "hung (SIGSTOP)", offender="203.0.113.151", client="192.0.2.11")
    finally:
        fresh_redis.resume()
    recovered(a, b, "203.0.113.151")
    assert code(chat(b, BENIGN, "203.0.113.150", "s-q")) == "ip_blocked"  # kept across the pause
    # alert fan-out reconnected on both sides: B's alerts from both outages reach A's listing
    for ip in ("203.0.113.150", "203.0.113.151"):
        assert poll(lambda ip=ip: admin_get(a, f"/api/security/alerts?ip={ip}")["alerts"], timeout=10), ip
    assert chat(a, EXFIL, "203.0.113.152")[0] == 400
    assert poll(lambda: admin_get(b, "/api/security/alerts?ip=203.0.113.152")["alerts"], timeout=10)
