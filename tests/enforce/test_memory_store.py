"""The in-memory store survives restarts and kill -9, and stays bounded without dropping sanctions."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

from llm_firewall.domain import Identity
from llm_firewall.enforce.memory_store import JOURNAL, MemoryStore
from llm_firewall.enforce.state import Approval, Sanction, Store
from llm_firewall.policy.model import Action

T0 = 1_700_000_000.0
ALICE = Identity(ip="203.0.113.7", user="alice", session="s-1", api_key_hash="key:0123456789abcdef")


def test_memory_store_implements_the_protocol(tmp_path: Path):
    assert isinstance(MemoryStore(tmp_path), Store)


async def test_sanctions_are_found_in_order_and_expire_absolutely():
    store = MemoryStore(None)
    await store.add_sanction(Sanction("user", "alice", "test", T0, T0 + 900))
    await store.add_sanction(Sanction("session", "s-1", "test", T0, T0 + 60))
    assert (await store.active_sanction(ALICE, T0 + 1)).kind == "session"
    assert (await store.active_sanction(ALICE, T0 + 61)).kind == "user"
    assert await store.active_sanction(ALICE, T0 + 900) is None
    assert await store.active_sanction(Identity(ip="198.51.100.1"), T0) is None


async def test_range_sanction_covers_the_network():
    store = MemoryStore(None)
    await store.add_sanction(Sanction("ip", "203.0.113.0/24", "range", T0, None))
    assert (await store.active_sanction(Identity(ip="203.0.113.200"), T0)).key == "203.0.113.0/24"
    assert await store.active_sanction(Identity(ip="203.0.114.1"), T0) is None
    assert await store.remove_sanction("ip", "203.0.113.0/24")
    assert await store.active_sanction(Identity(ip="203.0.113.200"), T0) is None


async def test_a_shorter_sanction_does_not_shorten_a_longer_one():
    store = MemoryStore(None)
    await store.add_sanction(Sanction("ip", "1.2.3.4", "a", T0, None))
    await store.add_sanction(Sanction("ip", "1.2.3.4", "b", T0, T0 + 10))
    assert (await store.active_sanction(Identity(ip="1.2.3.4"), T0 + 20)).reason == "a"


async def test_everything_survives_a_restart(tmp_path: Path):
    store = MemoryStore(tmp_path)
    await store.add_sanction(Sanction("ip", "203.0.113.7", "exfil", T0, T0 + 3600, 1, "al-1"))
    await store.add_sanction(Sanction("user", "old", "expired", T0 - 100, T0 - 1))
    await store.set_override_limit("user:alice", 5, 120, T0 + 3600)
    assert await store.add_strike("ladder", "alice", T0, 600) == 1
    assert await store.add_strike("ladder", "alice", T0 + 1, 600) == 2
    await store.set_level("ladder", "alice", 2, T0 + 86400)
    assert await store.claim("alert-1:block_ip", 86400, T0)
    await store.add_approval(Approval("ap1", Action("suspend_user", {"duration_s": 900}, "alice"), ALICE, "al-1", T0))
    await store.close()

    again = MemoryStore(tmp_path)
    s = await again.active_sanction(ALICE, T0 + 10)
    assert (s.kind, s.key, s.expires_at, s.level, s.alert_id) == ("ip", "203.0.113.7", T0 + 3600, 1, "al-1")
    assert [x.key for x in await again.list_sanctions(T0 + 10)] == ["203.0.113.7"]
    assert await again.override_limit("user:alice", T0 + 10) == (5, 120)
    assert await again.add_strike("ladder", "alice", T0 + 2, 600) == 3
    assert await again.get_level("ladder", "alice", T0 + 10) == 2
    assert not await again.claim("alert-1:block_ip", 86400, T0 + 10)
    (ap,) = await again.list_approvals("pending")
    assert ap.action.kind == "suspend_user" and ap.identity == ALICE
    await again.close()


async def test_torn_last_line_and_corrupt_lines_are_skipped(tmp_path: Path):
    store = MemoryStore(tmp_path)
    await store.add_sanction(Sanction("ip", "1.1.1.1", "kept", T0, None))
    await store.close()
    journal = tmp_path / JOURNAL
    with open(journal, "ab") as f:
        f.write(b'{"op": "nonsense"}\n{"op": "sanction", "s": {"kind": "ip", "key": "2.2.2.2", "rea')
    again = MemoryStore(tmp_path)
    assert await again.active_sanction(Identity(ip="1.1.1.1"), T0)
    assert await again.active_sanction(Identity(ip="2.2.2.2"), T0) is None
    stats = await again.stats()
    assert stats["journal_torn_tail"] == 1 and stats["journal_corrupt_lines"] == 1
    await again.add_sanction(Sanction("ip", "3.3.3.3", "after", T0, None))  # appends start on a clean line
    await again.close()
    third = MemoryStore(tmp_path)
    assert await third.active_sanction(Identity(ip="3.3.3.3"), T0)
    assert (await third.stats())["journal_torn_tail"] == 0


def test_sanctions_survive_kill_9(tmp_path: Path):
    script = textwrap.dedent(f"""
        import asyncio, os, signal, sys
        from llm_firewall.enforce.memory_store import MemoryStore
        from llm_firewall.enforce.state import Sanction
        async def main():
            store = MemoryStore({str(tmp_path)!r})
            for i in range(50):
                await store.add_sanction(Sanction("ip", f"10.9.0.{{i}}", "x", {T0}, {T0} + 3600))
            await store.set_override_limit("ip:10.9.0.1", 5, 120, {T0} + 3600)
            print("ready", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and "ready" in proc.stdout, proc.stderr

    async def check():
        store = MemoryStore(tmp_path)
        assert len(await store.list_sanctions(T0 + 1)) == 50
        assert await store.override_limit("ip:10.9.0.1", T0 + 1) == (5, 120)

    import asyncio

    asyncio.run(check())


async def test_bounded_caches_but_sanctions_never_dropped(tmp_path: Path):
    store = MemoryStore(tmp_path, max_entries=10)
    for i in range(40):
        await store.hit(f"bucket-{i}", 5, 60, T0)
        await store.add_sanction(Sanction("user", f"u{i}", "x", T0, T0 + 3600))
    stats = await store.stats()
    assert stats["rate_limit_buckets"] == 10 and stats["evicted"]["rate_limit_buckets"] == 30
    assert stats["sanctions"] == 40 and stats["sanction_overflow"] == 30
    for i in range(40):
        assert await store.active_sanction(Identity(ip="192.0.2.1", user=f"u{i}"), T0 + 1)


async def test_expired_sanctions_make_room_before_overflow_is_counted():
    store = MemoryStore(None, max_entries=5)
    for i in range(5):
        await store.add_sanction(Sanction("user", f"old{i}", "x", T0, T0 + 10))
    await store.add_sanction(Sanction("user", "new", "x", T0 + 20, T0 + 100))
    stats = await store.stats()
    assert stats["sanctions"] == 1 and stats["sanction_overflow"] == 0


async def test_compaction_keeps_live_state_and_shrinks_the_journal(tmp_path: Path):
    store = MemoryStore(tmp_path, compact_min_lines=50)
    await store.add_sanction(Sanction("ip", "1.1.1.1", "x", T0, None))
    for i in range(200):
        await store.claim(f"k{i}", 1, T0 + i * 10)  # each claim expires before the next
    lines = (tmp_path / JOURNAL).read_bytes().count(b"\n")
    assert lines < 60
    await store.close()
    again = MemoryStore(tmp_path)
    assert await again.active_sanction(Identity(ip="1.1.1.1"), T0 + 5000)
    assert not await again.claim("k199", 1, T0 + 1990.5)


async def test_override_limit_reimposed_is_extended_not_refreshed():
    store = MemoryStore(None)
    await store.set_override_limit("ip:1.2.3.4", 2, 120, T0 + 100)
    for _ in range(2):
        assert (await store.hit("override:ip:1.2.3.4", 2, 120, T0)).allowed
    await store.set_override_limit("ip:1.2.3.4", 2, 120, T0 + 200)
    assert not (await store.hit("override:ip:1.2.3.4", 2, 120, T0 + 1)).allowed
    assert await store.override_limit("ip:1.2.3.4", T0 + 150) == (2, 120)


async def test_approval_is_resolved_once():
    store = MemoryStore(None)
    await store.add_approval(Approval("a1", Action("block_ip", {"duration_s": None}, "1.2.3.4"), ALICE, None, T0))
    done = await store.resolve_approval("a1", True, "admin", T0 + 5)
    assert asdict(done)["action"]["params"] == {"duration_s": None}  # the admin API serialises it so
    assert done.status == "approved" and done.decided_by == "admin" and done.decided_at == T0 + 5
    assert await store.resolve_approval("a1", False, "other", T0 + 6) is None
    assert await store.resolve_approval("missing", True, "admin", T0) is None


async def test_overflow_is_reported_once_and_nothing_active_is_dropped() -> None:
    from llm_firewall.enforce.memory_store import MemoryStore as Store
    from llm_firewall.enforce.state import Sanction as S

    store = Store(None, max_entries=2)
    reports: list[tuple[str, int]] = []
    store.on_overflow = lambda what, count: reports.append((what, count))
    for i in range(5):
        await store.add_sanction(S("ip", f"192.0.2.{i}", "test", 1000.0, 10_000.0))
    assert len(await store.list_sanctions(1001.0)) == 5
    assert reports == [("sanctions", 1)]  # once a minute at most, not once per entry
    assert (await store.stats())["sanction_overflow"] == 3
