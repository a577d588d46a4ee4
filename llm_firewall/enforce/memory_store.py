"""The single-process store: state in memory, durably journalled to the data directory.

Every change is appended to `state.jsonl` (one JSON object a line, flushed at once; sanctions,
limits and approvals also fsync'd) before the awaiting caller resumes, so `kill -9` loses
nothing that was acknowledged. On start the journal is replayed; a torn last line (a write cut
by the kill) is dropped and truncated away. When the journal grows well past the live state it is
rewritten as a snapshot (temp file, fsync, atomic rename).

Memory stays bounded: rate-limit buckets (`buckets.py`), strikes, levels and idempotency claims
keep at most `max_entries` each, least recently used out first; sanctions and override limits in
force are NEVER dropped: above the bound they are still kept, and the overflow is counted in
`stats()` for the status page/alerts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson
from cachetools import LRUCache

from llm_firewall.domain import Identity
from llm_firewall.enforce.buckets import Buckets
from llm_firewall.enforce.identity import DEFAULT_IPV6_PREFIX, as_network, is_range
from llm_firewall.enforce.state import SANCTION_KINDS, Approval, RateResult, Sanction

log = logging.getLogger(__name__)

JOURNAL = "state.jsonl"
_RESOLVED_KEPT = 1000  # decided approvals kept for the admin page; pending ones always kept


class _CountingLRU(LRUCache):
    """An LRU cache that counts what it had to evict (reported, never silent)."""

    def __init__(self, maxsize: int):
        super().__init__(maxsize)
        self.evicted = 0

    def popitem(self):  # called by cachetools only when full
        self.evicted += 1
        return super().popitem()


class MemoryStore:
    def __init__(self, data_dir: Path | None, *, max_entries: int = 100_000, compact_min_lines: int = 10_000,
                 ipv6_prefix: int = DEFAULT_IPV6_PREFIX):
        self._dir = Path(data_dir) if data_dir is not None else None
        self._ipv6_prefix = ipv6_prefix  # an IPv6 client's own network is no range (see `is_range`)
        self._max = max_entries
        self._compact_min = compact_min_lines
        self._sanctions: dict[tuple[str, str], Sanction] = {}
        self._refusing = 0  # how many of them are of a kind that refuses (SANCTION_KINDS)
        self._ranges: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
        self._overrides: dict[str, tuple[int, float, float]] = {}
        self._buckets = Buckets(max_entries)
        self._strikes = _CountingLRU(max_entries)
        self._levels = _CountingLRU(max_entries)
        self._claims = _CountingLRU(max_entries)
        self._approvals: dict[str, Approval] = {}
        self._overflow = 0
        # Called (at most once a minute) when more state must be kept than `max_entries`: the
        # server turns it into an alert, so an operator hears of it rather than reading stats.
        self.on_overflow: Callable[[str, int], None] | None = None
        self._overflow_reported = 0.0
        self._now = 0.0  # latest clock value seen: compaction drops what expired before it
        self._pending: list[bytes] = []
        self._lock = asyncio.Lock()
        self._file = None
        self._lines = 0
        self._snapshot_lines = 0  # journal size right after the last compaction (or load)
        self._torn = 0
        self._corrupt = 0
        # A subclass that redefines a lookup (a stand-in for an unreachable store, say) is
        # asked through its async methods, never behind its back.
        self.answers_inline = all(getattr(type(self), name) is getattr(MemoryStore, name)
                                  for name in ("active_sanction", "hit", "override_limit"))
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._replay(self._dir / JOURNAL)
            self._snapshot_lines = self._lines
            self._file = open(self._dir / JOURNAL, "ab")

    # ---------------------------------------------------------------- journal

    def _replay(self, path: Path) -> None:
        if not path.exists():
            return
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a write cut short by a crash: drop it so appends start clean
            self._torn += 1
            with open(path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                self._apply(orjson.loads(line))
                self._lines += 1
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self._corrupt += 1

    def _apply(self, op: dict[str, Any]) -> None:
        """Replay one journal entry (also used to rebuild state after compaction)."""
        kind = op["op"]
        if kind == "sanction":
            self._put_sanction(Sanction.from_dict(op["s"]))
        elif kind == "unsanction":
            self._drop_sanction(op["kind"], op["key"])
        elif kind == "override":
            self._overrides[op["subject"]] = (int(op["limit"]), float(op["window_s"]), float(op["until"]))
        elif kind == "unoverride":
            self._overrides.pop(op["subject"], None)
        elif kind == "strike":
            times = self._strikes.get((op["ladder"], op["subject"])) or []
            self._strikes[(op["ladder"], op["subject"])] = [t for t in times if t > op["t"] - op["within_s"]] + [op["t"]]
        elif kind == "clear_strikes":
            self._strikes.pop((op["ladder"], op["subject"]), None)
        elif kind == "level":
            self._levels[(op["ladder"], op["subject"])] = (int(op["level"]), float(op["until"]))
        elif kind == "claim":
            self._claims[op["key"]] = float(op["until"])
        elif kind == "approval":
            self._approvals[op["a"]["id"]] = Approval.from_dict(op["a"])
        else:
            raise ValueError(kind)
        self._now = max(self._now, float(op.get("now", 0.0)))

    def _log(self, op: dict[str, Any]) -> None:
        if self._file is not None:
            op.setdefault("now", self._now)
            self._pending.append(orjson.dumps(op) + b"\n")

    async def _flush(self, fsync: bool) -> None:
        if self._file is None:
            return
        async with self._lock:
            if self._pending:
                chunk, self._pending = b"".join(self._pending), []
                await asyncio.to_thread(self._write, chunk, fsync)
                self._lines += chunk.count(b"\n")
            if self._lines > max(self._compact_min, 2 * self._snapshot_lines):
                await self._compact_locked()

    def _write(self, chunk: bytes, fsync: bool) -> None:
        assert self._file is not None
        self._file.write(chunk)
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def _snapshot(self) -> list[bytes]:
        """Live state as journal lines; what expired is dropped from memory as well."""
        now = self._now
        self._purge(now)
        for cache in (self._levels, self._claims):
            for k in [k for k, v in cache.items() if (v[1] if isinstance(v, tuple) else v) <= now]:
                del cache[k]
        ops: list[dict[str, Any]] = []
        ops += [{"op": "sanction", "s": s.to_dict()} for s in self._sanctions.values() if s.active(now)]
        ops += [{"op": "override", "subject": k, "limit": v[0], "window_s": v[1], "until": v[2]}
                for k, v in self._overrides.items() if v[2] > now]
        ops += [{"op": "strike", "ladder": k[0], "subject": k[1], "t": t, "within_s": 1e12}
                for k, times in self._strikes.items() for t in times]
        ops += [{"op": "level", "ladder": k[0], "subject": k[1], "level": v[0], "until": v[1]}
                for k, v in self._levels.items() if v[1] > now]
        ops += [{"op": "claim", "key": k, "until": v} for k, v in self._claims.items() if v > now]
        ops += [{"op": "approval", "a": a.to_dict()} for a in self._approvals.values()]
        for op in ops:
            op["now"] = now
        return [orjson.dumps(op) + b"\n" for op in ops]

    async def _compact_locked(self) -> None:
        assert self._dir is not None and self._file is not None
        lines = self._snapshot()
        self._pending.clear()  # everything pending is already reflected in the snapshot
        self._file = await asyncio.to_thread(self._rewrite, lines)
        self._lines = self._snapshot_lines = len(lines)

    def _rewrite(self, lines: list[bytes]):
        assert self._dir is not None and self._file is not None
        path, tmp = self._dir / JOURNAL, self._dir / (JOURNAL + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._file.close()
        return open(path, "ab")

    async def compact(self) -> None:
        if self._file is not None:
            async with self._lock:
                await self._compact_locked()

    # ---------------------------------------------------------------- sanctions

    def _tick(self, now: float) -> None:
        self._now = max(self._now, now)

    def _put_sanction(self, s: Sanction) -> None:
        if (s.kind, s.key) not in self._sanctions and s.kind in SANCTION_KINDS:
            self._refusing += 1
        self._sanctions[(s.kind, s.key)] = s
        if s.kind == "ip" and is_range(s.key, self._ipv6_prefix):
            self._ranges[s.key] = ipaddress.ip_network(s.key, strict=False)

    def _drop_sanction(self, kind: str, key: str) -> bool:
        if kind == "ip":
            self._ranges.pop(key, None)
        removed = self._sanctions.pop((kind, key), None) is not None
        if removed and kind in SANCTION_KINDS:
            self._refusing -= 1
        return removed

    def _purge(self, now: float) -> None:
        for k in [k for k, s in self._sanctions.items() if not s.active(now)]:
            self._drop_sanction(*k)
        for k in [k for k, v in self._overrides.items() if v[2] <= now]:
            del self._overrides[k]

    # The in-memory store answers synchronously; the `*_now` twins let the inline check skip an
    # await per lookup (the async methods are the Store protocol and delegate to them).

    async def active_sanction(self, identity: Identity, now: float) -> Sanction | None:
        return self.active_sanction_now(identity, now)

    def active_sanction_now(self, identity: Identity, now: float) -> Sanction | None:
        if not self._refusing:  # the common case: nobody is refused (flags and limits only list)
            return None
        for kind, value in identity.sanction_keys():
            s = self._sanctions.get((kind, value))
            if s is not None and s.active(now):
                return s
            if kind == "ip" and self._ranges:
                own = as_network(value)
                for key, net in self._ranges.items():
                    s = self._sanctions.get(("ip", key))
                    if (own is not None and own.version == net.version and own.subnet_of(net)  # type: ignore[arg-type]
                            and s is not None and s.active(now)):
                        return s
        return None

    def _overflowed(self, what: str) -> None:
        self._overflow += 1
        now = time.monotonic()
        if now - self._overflow_reported >= 60.0:
            self._overflow_reported = now
            log.warning("state store is over its %d-entry bound (%s); kept, not dropped (%d so far)",
                        self._max, what, self._overflow)
            if self.on_overflow is not None:
                self.on_overflow(what, self._overflow)

    async def add_sanction(self, s: Sanction) -> None:
        self._tick(s.created_at)
        existing = self._sanctions.get((s.kind, s.key))
        if existing is not None and existing.active(s.created_at) and (
            existing.expires_at is None or (s.expires_at is not None and existing.expires_at >= s.expires_at)
        ):
            if s.level > existing.level:  # keep the longer sanction, remember the higher level
                s = replace(existing, level=s.level)
            else:
                return
        if (s.kind, s.key) not in self._sanctions and len(self._sanctions) >= self._max:
            self._purge(s.created_at)
            if len(self._sanctions) >= self._max:
                self._overflowed("sanctions")  # kept anyway: an active sanction is never dropped
        self._put_sanction(s)
        self._log({"op": "sanction", "s": s.to_dict()})
        await self._flush(fsync=True)

    async def remove_sanction(self, kind: str, key: str) -> bool:
        removed = self._drop_sanction(kind, key)
        if removed:
            self._log({"op": "unsanction", "kind": kind, "key": key})
            await self._flush(fsync=True)
        return removed

    async def list_sanctions(self, now: float) -> list[Sanction]:
        self._tick(now)
        self._purge(now)
        return sorted(self._sanctions.values(), key=lambda s: s.created_at)

    # ---------------------------------------------------------------- rate limits

    async def hit(self, bucket: str, limit: int, window_s: float, now: float, cost: int = 1) -> RateResult:
        return self.hit_now(bucket, limit, window_s, now, cost)

    def hit_now(self, bucket: str, limit: int, window_s: float, now: float, cost: int = 1) -> RateResult:
        return self._buckets.hit(bucket, limit, window_s, now, cost)

    async def hit_all(self, hits: Sequence[tuple[str, int, float]], now: float, cost: int = 1) -> RateResult | None:
        return self.hit_all_now(hits, now, cost)

    def hit_all_now(self, hits: Sequence[tuple[str, int, float]], now: float, cost: int = 1) -> RateResult | None:
        for bucket, limit, window_s in hits:
            result = self._buckets.hit(bucket, limit, window_s, now, cost)
            if not result.allowed:
                return result
        return None

    async def set_override_limit(self, subject: str, limit: int, window_s: float, until: float) -> None:
        existing = self._overrides.get(subject)
        if existing is not None and existing[:2] == (limit, window_s) and existing[2] > self._now:
            # Same limit already in force: extend it without handing out a fresh allowance.
            until = max(until, existing[2])
        else:
            self._buckets.drop(f"override:{subject}")
            if existing is None and len(self._overrides) >= self._max:
                self._purge(self._now)
                if len(self._overrides) >= self._max:
                    self._overflowed("override limits")
        self._overrides[subject] = (limit, window_s, until)
        self._log({"op": "override", "subject": subject, "limit": limit, "window_s": window_s, "until": until})
        await self._flush(fsync=True)

    async def override_limit(self, subject: str, now: float) -> tuple[int, float] | None:
        return self.override_limit_now(subject, now)

    def override_limit_now(self, subject: str, now: float) -> tuple[int, float] | None:
        entry = self._overrides.get(subject)
        if entry is None or entry[2] <= now:
            return None
        return entry[0], entry[1]

    async def remove_override_limit(self, subject: str) -> bool:
        removed = self._overrides.pop(subject, None) is not None
        self._buckets.drop(f"override:{subject}")
        if removed:
            self._log({"op": "unoverride", "subject": subject})
            await self._flush(fsync=True)
        return removed

    def has_overrides(self) -> bool:
        return bool(self._overrides)

    # ---------------------------------------------------------------- escalation

    async def add_strike(self, ladder: str, subject: str, now: float, within_s: float) -> int:
        self._tick(now)
        times = [t for t in (self._strikes.get((ladder, subject)) or []) if t > now - within_s] + [now]
        self._strikes[(ladder, subject)] = times
        self._log({"op": "strike", "ladder": ladder, "subject": subject, "t": now, "within_s": within_s})
        await self._flush(fsync=False)
        return len(times)

    async def clear_strikes(self, ladder: str, subject: str) -> None:
        if self._strikes.pop((ladder, subject), None) is not None:
            self._log({"op": "clear_strikes", "ladder": ladder, "subject": subject})
            await self._flush(fsync=False)

    async def get_level(self, ladder: str, subject: str, now: float) -> int:
        entry = self._levels.get((ladder, subject))
        return entry[0] if entry is not None and entry[1] > now else 0

    async def set_level(self, ladder: str, subject: str, level: int, until: float) -> None:
        self._levels[(ladder, subject)] = (level, until)
        self._log({"op": "level", "ladder": ladder, "subject": subject, "level": level, "until": until})
        await self._flush(fsync=True)

    async def claim(self, idempotency_key: str, ttl_s: float, now: float) -> bool:
        self._tick(now)
        until = self._claims.get(idempotency_key)
        if until is not None and until > now:
            return False
        self._claims[idempotency_key] = now + ttl_s
        self._log({"op": "claim", "key": idempotency_key, "until": now + ttl_s})
        await self._flush(fsync=False)
        return True

    # ---------------------------------------------------------------- approvals

    async def add_approval(self, a: Approval) -> None:
        self._approvals[a.id] = a
        self._log({"op": "approval", "a": a.to_dict()})
        self._prune_approvals()
        await self._flush(fsync=True)

    def _prune_approvals(self) -> None:
        decided = [a for a in self._approvals.values() if a.status != "pending"]
        if len(decided) > _RESOLVED_KEPT:
            decided.sort(key=lambda a: a.decided_at or a.created_at)
            for a in decided[: len(decided) - _RESOLVED_KEPT]:
                del self._approvals[a.id]

    async def list_approvals(self, status: str | None = None) -> list[Approval]:
        items = [a for a in self._approvals.values() if status is None or a.status == status]
        return sorted(items, key=lambda a: a.created_at)

    async def get_approval(self, approval_id: str) -> Approval | None:
        return self._approvals.get(approval_id)

    async def resolve_approval(self, approval_id: str, approve: bool, by: str, now: float) -> Approval | None:
        a = self._approvals.get(approval_id)
        if a is None or a.status != "pending":
            return None
        a = replace(a, status="approved" if approve else "denied", decided_by=by, decided_at=now)
        await self.add_approval(a)
        return a

    # ---------------------------------------------------------------- status

    async def stats(self) -> dict:
        now = self._now
        active = [s for s in self._sanctions.values() if s.active(now)]
        by_kind: dict[str, int] = {}
        for s in active:
            by_kind[s.kind] = by_kind.get(s.kind, 0) + 1
        return {
            "backend": "memory",
            "persistent": self._dir is not None,
            "sanctions": len(active),
            "sanctions_by_kind": by_kind,
            "override_limits": sum(1 for v in self._overrides.values() if v[2] > now),
            "rate_limit_buckets": len(self._buckets),
            "pending_approvals": sum(1 for a in self._approvals.values() if a.status == "pending"),
            "max_entries": self._max,
            "sanction_overflow": self._overflow,
            "evicted": {
                "rate_limit_buckets": self._buckets.evicted,
                "strikes": self._strikes.evicted,
                "levels": self._levels.evicted,
                "claims": self._claims.evicted,
            },
            "journal_lines": self._lines,
            "journal_torn_tail": self._torn,
            "journal_corrupt_lines": self._corrupt,
        }

    async def close(self) -> None:
        if self._file is None:
            return
        await self._flush(fsync=True)
        async with self._lock:
            self._file.close()
            self._file = None
