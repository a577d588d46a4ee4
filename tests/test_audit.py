"""The audit trail: durable, gap-free across restarts and kill -9, queryable, never holding a secret."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llm_firewall.audit import AuditLog
from llm_firewall.domain import Identity

SECRET = "sk-proj-abcdefghijklmnopqrstuvwx"


async def test_sequence_is_gap_free_and_continues_after_reopen(tmp_path: Path):
    log = AuditLog(tmp_path)
    seqs = await asyncio.gather(*(log.append("alert", {"alert_id": f"a{i}"}) for i in range(300)))
    assert sorted(seqs) == list(range(1, 301))
    await log.close()
    again = AuditLog(tmp_path / "audit.db")
    assert await again.append("alert", {"alert_id": "next"}) == 301
    assert again.stats() == {"path": str(tmp_path / "audit.db"), "records": 301, "last_seq": 301, "gap_free": True}
    await again.close()


async def test_secrets_are_redacted_everywhere_in_a_record():
    log = AuditLog(None)
    await log.append("alert", {
        "alert_id": "a1",
        "excerpt": f"please use {SECRET} for this",
        "headers": {"Authorization": "Bearer abcdefghijklmnop", "X-Api-Key": "plainvalue"},
        "nested": [{"text": f"token={SECRET}"}, ("tuple", SECRET)],
        "identity": Identity(ip="1.2.3.4", api_key_hash="key:0011223344556677", user="alice"),
    })
    (row,) = log.query()
    text = str(row)
    assert SECRET not in text and "abcdefghijklmnop" not in text and "plainvalue" not in text
    assert row["record"]["headers"]["X-Api-Key"] == "[REDACTED]"
    assert row["record"]["identity"]["user"] == "alice"
    assert row["record"]["identity"]["api_key_hash"] == "key:0011223344556677"  # a fingerprint, kept
    await log.close()


async def test_query_filters(tmp_path: Path):
    log = AuditLog(tmp_path)
    await log.append("alert", {"alert_id": "a1", "identity": {"ip": "1.1.1.1", "user": "alice"}})
    await log.append("action", {"alert_id": "a1", "identity": {"ip": "1.1.1.1", "user": "alice"}, "action": "block_ip"})
    await log.append("alert", {"alert_id": "a2", "ip": "2.2.2.2", "session": "s-2"})
    assert [r["seq"] for r in log.query(kind="alert")] == [1, 3]
    assert [r["seq"] for r in log.query(identity="alice")] == [1, 2]
    assert [r["seq"] for r in log.query(identity="s-2")] == [3]
    assert [r["seq"] for r in log.query(since_seq=1, limit=1)] == [2]
    assert [r["seq"] for r in log.query(limit=2)] == [2, 3]  # the latest, in order
    assert [r["seq"] for r in log.query(alert_id="a1", kind=["action"])] == [2]
    assert [r["seq"] for r in await log.aquery(kind="action")] == [2]
    assert log.query(kind="alert")[0]["record"]["alert_id"] == "a1"
    await log.close()


def test_acknowledged_records_survive_kill_9(tmp_path: Path):
    script = textwrap.dedent(f"""
        import asyncio, os, signal
        from llm_firewall.audit import AuditLog
        async def main():
            log = AuditLog({str(tmp_path)!r})
            for i in range(100):
                await log.append("alert", {{"alert_id": f"a{{i}}"}})
            print("acknowledged", flush=True)
            # more writes in flight when the process dies
            for i in range(50):
                asyncio.ensure_future(log.append("alert", {{"alert_id": f"b{{i}}"}}))
            await asyncio.sleep(0)
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and "acknowledged" in proc.stdout, proc.stderr

    async def check():
        log = AuditLog(tmp_path)
        stats = log.stats()
        assert stats["gap_free"] and stats["records"] >= 100
        assert await log.append("alert", {}) == stats["last_seq"] + 1
        await log.close()

    asyncio.run(check())


async def test_closed_log_refuses_appends():
    log = AuditLog(None)
    await log.close()
    await log.close()  # idempotent
    with pytest.raises(RuntimeError):
        await log.append("alert", {})
