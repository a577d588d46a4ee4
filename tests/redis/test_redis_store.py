"""RedisStore behaves like the memory store, atomically across instances ("replicas"), and degrades
visibly when Redis dies or hangs: rate limits fall back to a local limiter, sanction lookups fail
closed, and what was written meanwhile reaches Redis once it is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from llm_firewall.audit import AuditLog
from llm_firewall.domain import Identity
from llm_firewall.enforce.actions import Enforcer
from llm_firewall.enforce.memory_store import MemoryStore
from llm_firewall.enforce.redis_store import RedisStore, StoreUnavailable
from llm_firewall.enforce.state import Approval, Sanction, Store
from llm_firewall.metrics import Metrics
from llm_firewall.policy.model import Action, load_policy

ALICE = Identity(ip="203.0.113.7", user="alice", session="s-1", api_key_hash="key:0123456789abcdef")
BOUND_S = 2.0  # generous: the configured timeout is 0.1 s; the figure itself is printed


def make(url: str, prefix: str, tmp: Path | None = None, **kw) -> RedisStore:
    return RedisStore(url, fallback=MemoryStore(tmp), prefix=prefix, retry_interval_s=0.1, **kw)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def pair(redis_server, prefix):
    """Two stores on one Redis: two replicas' views of the same state.

    These tests check shared-state semantics, not timeouts (tested on their own below): a
    generous timeout keeps a busy machine from degrading a store to its local fallback mid-test."""
    a, b = make(redis_server.url, prefix, timeout_s=2.0), make(redis_server.url, prefix, timeout_s=2.0)
    yield a, b
    await a.close()
    await b.close()


async def wait_until(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond():
            return True
        await asyncio.sleep(0.05)
    return False


def test_redis_store_implements_the_protocol(redis_server):
    assert isinstance(make(redis_server.url, "x:"), Store)


async def test_sanctions_are_shared_found_in_order_and_expire_absolutely(pair):
    a, b = pair
    t0 = time.time()
    await a.add_sanction(Sanction("user", "alice", "test", t0, t0 + 900))
    await a.add_sanction(Sanction("session", "s-1", "test", t0, t0 + 60, 1, "al-1"))
    s = await b.active_sanction(ALICE, t0 + 1)
    assert (s.kind, s.key, s.expires_at, s.level, s.alert_id) == ("session", "s-1", t0 + 60, 1, "al-1")
    assert (await b.active_sanction(ALICE, t0 + 61)).kind == "user"
    assert await b.active_sanction(ALICE, t0 + 900) is None
    assert await b.active_sanction(Identity(ip="198.51.100.1"), t0) is None
    assert [x.key for x in await b.list_sanctions(t0 + 61)] == ["alice"]
    assert await b.remove_sanction("user", "alice")
    assert not await b.remove_sanction("user", "alice")
    assert await a.active_sanction(ALICE, t0 + 61) is None


async def test_range_sanction_covers_the_network(pair):
    a, b = pair
    t0 = time.time()
    await a.add_sanction(Sanction("ip", "203.0.113.0/24", "range", t0, None))
    assert (await b.active_sanction(Identity(ip="203.0.113.200"), t0)).key == "203.0.113.0/24"
    assert await b.active_sanction(Identity(ip="203.0.114.1"), t0) is None
    assert await b.remove_sanction("ip", "203.0.113.0/24")
    assert await a.active_sanction(Identity(ip="203.0.113.200"), t0) is None


async def test_a_shorter_sanction_does_not_shorten_a_longer_one_but_raises_its_level(pair):
    a, b = pair
    t0 = time.time()
    await a.add_sanction(Sanction("ip", "1.2.3.4", "a", t0, None))
    await b.add_sanction(Sanction("ip", "1.2.3.4", "b", t0, t0 + 10, level=3))
    s = await a.active_sanction(Identity(ip="1.2.3.4"), t0 + 20)
    assert (s.reason, s.expires_at, s.level) == ("a", None, 3)
    await b.add_sanction(Sanction("ip", "5.6.7.8", "short", t0, t0 + 10))
    await a.add_sanction(Sanction("ip", "5.6.7.8", "long", t0, t0 + 100))
    assert (await b.active_sanction(Identity(ip="5.6.7.8"), t0 + 50)).reason == "long"


async def test_listing_is_bounded_and_drops_expired(redis_server, prefix):
    store = make(redis_server.url, prefix, max_list=5)
    t0 = time.time()
    for i in range(8):
        await store.add_sanction(Sanction("user", f"u{i}", "x", t0, t0 + 3600))
    await store.add_sanction(Sanction("user", "gone", "x", t0 - 100, t0 - 1))
    assert len(await store.list_sanctions(t0)) == 5
    stats = await store.stats()
    assert stats["sanctions"] == 8 and stats["sanction_listing_capped"] and stats["redis"] == "up"
    await store.close()


async def test_hit_admits_exactly_the_limit_across_replicas_under_concurrency(pair):
    a, b = pair
    now = time.time()
    results = await asyncio.gather(*[(a if i % 2 else b).hit("rl:ip:9.9.9.9", 10, 60, now) for i in range(40)])
    assert sum(r.allowed for r in results) == 10
    refused = [r for r in results if not r.allowed]
    assert all(r.retry_after == pytest.approx(6.0) and r.remaining == 0 for r in refused)
    assert (await a.hit("rl:ip:9.9.9.9", 10, 60, now + 6.0)).allowed  # one interval later, one more


async def test_hit_matches_the_memory_store_step_by_step(redis_server, prefix):
    redis_store, memory = make(redis_server.url, prefix), MemoryStore(None)
    now = time.time()
    for step in [0, 0, 0, 0.5, 1.0, 1.0, 3.7, 3.7, 3.7, 10, 10.1, 10.2, 20]:
        got = await redis_store.hit("b", 3, 5, now + step)
        want = await memory.hit("b", 3, 5, now + step)
        assert (got.allowed, got.remaining, got.limit) == (want.allowed, want.remaining, want.limit)
        assert got.retry_after == pytest.approx(want.retry_after, abs=1e-6)
    assert not (await redis_store.hit("zero", 0, 5, now)).allowed
    for step, cost in [(0, 30), (0, 50), (0, 30), (2.5, 30), (2.5, 500), (60, 500), (60, 1)]:  # size limits: KiB
        got = await redis_store.hit("kib", 100, 10, now + step, cost)
        want = await memory.hit("kib", 100, 10, now + step, cost)
        assert (got.allowed, got.remaining) == (want.allowed, want.remaining)
        assert got.retry_after == pytest.approx(want.retry_after, abs=1e-6)
    await redis_store.close()


async def test_hit_all_charges_in_order_and_stops_at_the_first_refusal_like_the_memory_store(redis_server, prefix):
    redis_store, memory = make(redis_server.url, prefix), MemoryStore(None)
    now = time.time()
    limits = [("client", 5, 60.0), ("ip", 2, 60.0), ("tight", 1, 60.0)]
    for step, cost in [(0, 1), (0, 1), (0, 1), (1, 1), (31, 1), (31, 3), (61, 1), (200, 1)]:
        got = await redis_store.hit_all(limits, now + step, cost)
        want = await memory.hit_all(limits, now + step, cost)
        assert (got is None) == (want is None)
        if got is not None:
            assert (got.allowed, got.limit) == (want.allowed, want.limit)
            assert got.retry_after == pytest.approx(want.retry_after, abs=1e-6)
    for bucket, limit, window in limits:  # every bucket ends where separate hits leave it
        got, want = await redis_store.hit(bucket, limit, window, now + 200), await memory.hit(bucket, limit, window, now + 200)
        assert (got.allowed, got.remaining) == (want.allowed, want.remaining)
    await redis_store.close()


async def test_a_request_check_is_one_redis_call(redis_server, prefix, tmp_path):
    """The sanction lookup and every rate limit in one script: the client's packing and parsing
    of ~12 commands a request cost more CPU than the rest of it, and each round trip adds to
    every request's latency."""
    store = make(redis_server.url, prefix, timeout_s=2.0)
    enforcer = Enforcer(store, AuditLog(tmp_path / "audit.db"), clock=time.time)
    policy = load_policy("production")
    await enforcer.check(ALICE, policy)  # loads the scripts
    assert await _commands_sent(redis_server.url, enforcer, policy) == ["EVALSHA"] * 5
    await store.add_sanction(Sanction("user", "alice", "x", time.time(), None))
    refusal = await enforcer.check(ALICE, policy)
    assert refusal is not None and refusal.status == 403
    await store.close()


async def _commands_sent(url: str, enforcer: Enforcer, policy, checks: int = 5) -> list[str]:
    """The commands clients sent (not the ones scripts ran) while ALICE's request is checked
    `checks` times, each admitted."""
    import redis.asyncio as aioredis

    admin = aioredis.from_url(url, decode_responses=True)
    sent = []
    async with admin.monitor() as monitor:
        for _ in range(checks):
            assert await enforcer.check(ALICE, policy) is None
        await admin.echo("end of checks")
        while True:
            cmd = await asyncio.wait_for(monitor.next_command(), 5)
            if "end of checks" in cmd["command"]:
                break
            name = cmd["command"].split()[0].upper()
            if cmd.get("client_type") != "lua" and name not in ("HELLO", "CLIENT", "SELECT", "AUTH"):
                sent.append(name)  # (a new connection's handshake aside)
    await admin.aclose()
    return sent


async def test_a_blocked_ipv6_client_leaves_other_requests_one_call_and_ranges_still_cover(
        redis_server, prefix, tmp_path):
    """An IPv6 client is blocked as its /64, looked up exactly: unlike a range, it does not send
    every other request down the step-by-step path."""
    store = make(redis_server.url, prefix, timeout_s=2.0)
    enforcer = Enforcer(store, AuditLog(tmp_path / "audit.db"), clock=time.time)
    policy = load_policy("production")
    await store.add_sanction(Sanction("ip", "2001:db8:7:1::/64", "x", time.time(), None))
    await enforcer.check(ALICE, policy)  # loads the scripts
    assert await _commands_sent(redis_server.url, enforcer, policy) == ["EVALSHA"] * 5
    blocked = await enforcer.check(Identity(ip="2001:db8:7:1::/64"), policy)
    assert blocked is not None and blocked.code == "ip_blocked"
    assert await enforcer.check(Identity(ip="2001:db8:7:2::/64"), policy) is None
    await store.add_sanction(Sanction("ip", "2001:db8:7::/48", "range", time.time(), None))
    covered = await enforcer.check(Identity(ip="2001:db8:7:2::/64"), policy)
    assert covered is not None and covered.code == "ip_blocked"
    await store.close()


async def test_the_one_call_check_decides_as_the_step_by_step_check(redis_server, tmp_path):
    """Two stores on separate key spaces see the same history; one checks in one script, the
    other step by step (its `check_quick` switched off). Every answer is the same: sanctions
    (exact, expired, a covering range), override limits, allowlisted users, a policy's limits."""
    path = tmp_path / "tight.yaml"
    path.write_text("name: tight\nextends: production\n"
                    "rate_limits: [{key: ip, limit: 3, window: 60s}, {key: user, limit: 2, window: 60s}]\n"
                    "allowlist: {users: [ops-*]}\n")
    policy = load_policy(str(path))
    run = uuid.uuid4().hex[:8]
    quick, slow = make(redis_server.url, f"q{run}:", timeout_s=2.0), make(redis_server.url, f"s{run}:", timeout_s=2.0)
    slow.check_quick = None  # type: ignore[assignment]
    clock = [time.time()]
    runs = [Enforcer(store, AuditLog(tmp_path / f"{i}.db"), clock=lambda: clock[0]) for i, store in enumerate((quick, slow))]

    def who(i: int, user: str = "u") -> Identity:
        return Identity(ip=f"198.51.100.{i}", user=f"{user}{i}", session=f"s{i}")

    async def both(identity: Identity) -> tuple:
        out = []
        for enforcer in runs:
            r = await enforcer.check(identity, policy)
            out.append(None if r is None else (r.status, r.code, round(r.retry_after or 0, 3)))
        assert out[0] == out[1], (identity, out)
        return out[0]

    async def on_both(op: str, *args) -> None:
        for store in (quick, slow):
            await getattr(store, op)(*args)

    now = clock[0]
    answers = [await both(who(1)) for _ in range(4)]  # the user limit (2) refuses the third
    assert answers[:2] == [None, None] and answers[2] is not None and answers[2][0] == 429
    answers = [await both(who(2, "ops-")) for _ in range(5)]  # allowlisted: never limited
    assert answers == [None] * 5
    await on_both("add_sanction", Sanction("user", "u3", "x", now, now + 30))
    assert (await both(who(3)))[0] == 403
    clock[0] += 31  # expired
    assert await both(who(3)) is None
    await on_both("add_sanction", Sanction("ip", "198.51.100.0/28", "range", clock[0], None))
    assert (await both(who(4)))[0] == 403
    assert await both(who(40)) is None  # outside the range, which exists
    # A scoped user's sanction held by its address: another id, or none, from there is refused too.
    scoped = Identity(ip="198.51.100.60", user="bob@198.51.100.60", scope="198.51.100.60")
    await on_both("add_sanction", Sanction("user", "*@198.51.100.60", "x", clock[0], clock[0] + 60))
    assert (await both(scoped))[1] == "user_suspended"
    assert (await both(Identity(ip="198.51.100.60", session="s@198.51.100.60", scope="198.51.100.60")))[1] == \
        "user_suspended"
    assert await both(Identity(ip="198.51.100.61", user="bob@198.51.100.61", scope="198.51.100.61")) is None
    await on_both("set_override_limit", "user:u5", 1, 60.0, clock[0] + 600)
    answers = [await both(Identity(ip="198.51.100.77", user="u5", session="x")) for _ in range(2)]
    assert answers[0] is None and answers[1] is not None and answers[1][0] == 429
    await quick.close()
    await slow.close()


async def test_override_limits_extend_without_fresh_allowance(pair):
    a, b = pair
    now = time.time()
    await a.set_override_limit("user:alice", 2, 120, now + 3600)
    assert await b.override_limit("user:alice", now) == (2, 120)
    assert [(await b.hit("override:user:alice", 2, 120, now)).allowed for _ in range(3)] == [True, True, False]
    await a.set_override_limit("user:alice", 2, 120, now + 7200)  # same limit: extended, not reset
    assert not (await a.hit("override:user:alice", 2, 120, now)).allowed
    assert await b.override_limit("user:alice", now + 5000) == (2, 120)
    await a.set_override_limit("user:alice", 5, 60, now + 60)  # a different limit starts afresh
    assert (await b.hit("override:user:alice", 5, 60, now)).allowed
    assert await b.override_limit("user:alice", now + 61) is None


async def test_strikes_and_levels(pair):
    a, b = pair
    now = time.time()
    assert await a.add_strike("pi", "alice", now, 600) == 1
    assert await b.add_strike("pi", "alice", now + 1, 600) == 2
    assert await a.add_strike("pi", "alice", now + 700, 600) == 1  # the first two fell out of the window
    await b.clear_strikes("pi", "alice")
    assert await a.add_strike("pi", "alice", now + 701, 600) == 1
    assert await a.get_level("pi", "alice", now) == 0
    await a.set_level("pi", "alice", 2, now + 86400)
    assert await b.get_level("pi", "alice", now + 10) == 2
    assert await b.get_level("pi", "alice", now + 86401) == 0


async def test_claim_is_granted_once_across_replicas(pair):
    a, b = pair
    now = time.time()
    results = await asyncio.gather(*[(a if i % 2 else b).claim("action:al-1:block_ip:1.2.3.4", 60, now)
                                     for i in range(20)])
    assert results.count(True) == 1


async def test_approvals_resolve_once(pair):
    a, b = pair
    now = time.time()
    ap = Approval("ap1", Action("suspend_user", {"duration_s": 900}, "alice"), ALICE, "al-1", now)
    await a.add_approval(ap)
    (listed,) = await b.list_approvals("pending")
    assert listed.action.kind == "suspend_user" and listed.identity == ALICE and listed.created_at == now
    assert (await b.get_approval("ap1")).alert_id == "al-1"
    decided = await asyncio.gather(a.resolve_approval("ap1", True, "root", now + 1),
                                   b.resolve_approval("ap1", False, "eve", now + 1))
    winners = [d for d in decided if d is not None]
    assert len(winners) == 1
    got = await a.get_approval("ap1")
    assert (got.status, got.decided_by) == (winners[0].status, winners[0].decided_by)
    assert await b.list_approvals("pending") == []
    assert await a.resolve_approval("nope", True, "root", now) is None
    assert (await a.stats())["pending_approvals"] == 0


async def test_the_same_action_raced_from_two_replicas_executes_once(pair, tmp_path):
    a, b = pair
    policy = load_policy("production")
    audits = [AuditLog(None), AuditLog(None)]
    enforcers = [Enforcer(a, audits[0], clock=time.time), Enforcer(b, audits[1], clock=time.time)]
    action = Action("block_ip", {"duration_s": 3600.0}, "198.51.100.9")
    who = Identity(ip="198.51.100.9")
    results = await asyncio.gather(*[enforcers[i % 2].execute(action, who, "al-race", "exfil")
                                     for i in range(6)])
    assert sorted(r["status"] for r in results) == ["done"] + ["duplicate"] * 5
    assert (await b.active_sanction(who, time.time())).kind == "ip"
    assert (await enforcers[1].check(who, policy)).code == "ip_blocked"
    for audit in audits:
        await audit.close()


async def test_redis_hung_calls_return_within_the_timeout_and_degrade_visibly(fresh_redis, prefix, tmp_path):
    metrics = Metrics()
    store = make(fresh_redis.url, prefix, tmp_path / "fb", metrics=metrics)
    other = make(fresh_redis.url, prefix)
    now = time.time()
    await store.add_sanction(Sanction("user", "before", "x", now, now + 3600))
    fresh_redis.pause()
    try:
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable):  # unknown state: the Enforcer fails closed by default
            await store.active_sanction(Identity(ip="192.0.2.1", user="before"), now)
        first = time.perf_counter() - started
        started = time.perf_counter()
        results = [await store.hit("rl:ip:192.0.2.1", 3, 60, now) for _ in range(5)]
        later = time.perf_counter() - started
        print(f"\nredis hung: first call gave up after {first * 1000:.0f} ms (timeout 100 ms); "
              f"5 later calls took {later * 1000:.1f} ms in all")
        assert first < BOUND_S and later < BOUND_S
        assert [r.allowed for r in results] == [True, True, True, False, False]  # the local limiter
        await store.add_sanction(Sanction("ip", "192.0.2.66", "during", now, now + 3600))
        assert (await store.active_sanction(Identity(ip="192.0.2.66"), now)).reason == "during"
        stats = await store.stats()
        assert stats["redis"] == "down" and stats["errors"] >= 1 and stats["unreconciled"]
        assert metrics.store_errors.labels("active_sanction")._value.get() >= 1
    finally:
        fresh_redis.resume()
    assert await wait_until(lambda: _up(store)), "the store never noticed Redis was back"
    assert (await other.active_sanction(Identity(ip="192.0.2.66"), now)).reason == "during"
    assert (await other.active_sanction(Identity(ip="192.0.2.1", user="before"), now)).key == "before"
    stats = await store.stats()
    assert stats["redis"] == "up" and stats["outages"] == 1 and not stats["unreconciled"]
    assert stats["fallback"]["sanctions"] == 0  # pushed, then dropped locally: no duplicates
    assert sorted(s.key for s in await other.list_sanctions(now)) == ["192.0.2.66", "before"]
    await store.close()
    await other.close()


async def test_rate_limit_fail_mode_closed_raises(fresh_redis, prefix):
    store = make(fresh_redis.url, prefix, fail_modes=lambda: {"store": "open", "rate_limit": "closed"})
    fresh_redis.kill()
    with pytest.raises(StoreUnavailable):
        await store.hit("b", 3, 60, time.time())
    await store.close()


async def test_redis_killed_and_restarted_gets_what_happened_meanwhile(fresh_redis, prefix, tmp_path):
    store = make(fresh_redis.url, prefix, tmp_path / "fb")
    events: list[dict] = []
    store.on_state_change = events.append
    now = time.time()
    fresh_redis.kill()
    started = time.perf_counter()
    await store.add_sanction(Sanction("session", "s-9", "during", now, now + 600))
    await store.set_override_limit("ip:192.0.2.9", 5, 120, now + 3600)
    ap = Approval("ap-down", Action("suspend_user", {"duration_s": 900}, "bob"), Identity(ip="192.0.2.9", user="bob"),
                  "al-9", now)
    await store.add_approval(ap)
    await store.add_approval(ap)  # recorded twice locally: pushed once
    assert await store.claim("k", 60, now) and not await store.claim("k", 60, now)
    elapsed = time.perf_counter() - started
    print(f"\nredis killed: 6 writes degraded to the local store in {elapsed * 1000:.1f} ms")
    assert elapsed < BOUND_S
    assert (await store.active_sanction(Identity(ip="192.0.2.9", session="s-9"), now)).reason == "during"
    assert [a.id for a in await store.list_approvals("pending")] == ["ap-down"]
    fresh_redis.start()  # same port, empty data
    assert await wait_until(lambda: _up(store))
    other = make(fresh_redis.url, prefix)
    assert (await other.active_sanction(Identity(ip="192.0.2.9", session="s-9"), now)).reason == "during"
    assert await other.override_limit("ip:192.0.2.9", now) == (5, 120)
    assert [a.id for a in await other.list_approvals("pending")] == ["ap-down"]
    assert await store.reconcile() == {"sanctions": 0, "approvals": 0, "ops": 0}
    assert [e["redis"] for e in events] == ["down", "up"]
    assert events[1]["reconciled"] == {"sanctions": 1, "approvals": 1, "ops": 1}
    await store.close()
    await other.close()


async def _up(store: RedisStore) -> bool:
    return store.available and not (await store.stats())["unreconciled"]


async def test_a_limit_imposed_on_one_replica_is_enforced_by_the_other(pair):
    from llm_firewall.enforce.identity import subject

    a, b = pair
    policy = load_policy("production")
    audit = AuditLog(None)
    enforcer_b = Enforcer(b, audit, clock=time.time)
    who = Identity(ip="198.51.100.33", user="carol", session="s-33")
    assert await enforcer_b.check(who, policy) is None
    await a.set_override_limit(subject("user", "carol"), 2, 120, time.time() + 3600)
    refusals = [await enforcer_b.check(who, policy) for _ in range(3)]
    assert refusals[:2] == [None, None] and refusals[2].code == "rate_limit_exceeded"
    assert refusals[2].retry_after == pytest.approx(60, abs=1)
    await audit.close()
