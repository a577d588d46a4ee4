"""Append-only audit trail: every alert, decision and action, durable and gap-free.

SQLite in WAL mode, written by one background thread so the event loop never waits on disk:
callers enqueue records, the thread commits them in batches and only then wakes the awaiting
callers, so an acknowledged record is on disk. Sequence numbers are assigned inside the commit
(max + 1, read under the write lock), so they have no gaps, across restarts and crashes alike,
and across the worker processes of `serve --workers N` that share one database file. Every string is passed
through the one secret redactor before it is stored.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import orjson

from llm_firewall.redact import redact_value

AUDIT_DB = "audit.db"
_STOP = object()
_COLUMNS = ("ip", "user", "session", "agent", "key")


def _identity_columns(record: Mapping[str, Any]) -> tuple[str | None, ...]:
    ident = record.get("identity")
    source: Mapping[str, Any] = ident if isinstance(ident, Mapping) else record
    key = source.get("api_key_hash") or source.get("key")
    return tuple(
        None if (v := (key if col == "key" else source.get(col))) is None else str(v) for col in _COLUMNS
    )


class AuditLog:
    def __init__(self, path: Path | str | None, *, clock: Callable[[], float] = time.time,
                 synchronous: str = "FULL", batch_max: int = 512):
        """`path` is the database file or a data directory (then data_dir/audit.db); None: memory."""
        self._clock = clock
        self._batch_max = batch_max
        if path is None:
            target = ":memory:"
            self.path: Path | None = None
        else:
            p = Path(path)
            if p.is_dir() or p.suffix == "":
                p.mkdir(parents=True, exist_ok=True)
                p = p / AUDIT_DB
            p.parent.mkdir(parents=True, exist_ok=True)
            self.path = p
            target = str(p)
        self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level="DEFERRED")
        self._db_lock = threading.Lock()
        with self._db_lock:
            if target != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA busy_timeout=10000")  # other workers' commits are short
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            self._conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS audit (
                    seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL,
                    ip TEXT, user TEXT, session TEXT, agent TEXT, key TEXT, alert_id TEXT,
                    record TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS audit_kind ON audit(kind, seq);
                CREATE INDEX IF NOT EXISTS audit_alert ON audit(alert_id);
                CREATE INDEX IF NOT EXISTS audit_ip ON audit(ip);
                CREATE INDEX IF NOT EXISTS audit_user ON audit(user);
                CREATE INDEX IF NOT EXISTS audit_session ON audit(session);
                """
            )
            self._conn.commit()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        # Called with (kind, scrubbed record) for every append: the decision log reads from here.
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._writer = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ writing

    async def append(self, kind: str, record: Mapping[str, Any]) -> int:
        """Store one record; returns its sequence number once it is committed."""
        if self._closed:
            raise RuntimeError("audit log is closed")
        clean = redact_value(record)
        for listener in self.listeners:
            listener(kind, clean)
        alert_id = clean.get("alert_id")
        row = (self._clock(), str(kind), *_identity_columns(clean), None if alert_id is None else str(alert_id),
               orjson.dumps(clean, option=orjson.OPT_NON_STR_KEYS).decode())
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((row, loop, fut))
        return await fut

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self._batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list) -> None:
        with self._db_lock:
            try:
                # The write lock first, then the next number: another process sharing the file
                # cannot take the same one in between.
                self._conn.execute("BEGIN IMMEDIATE")
                first = self._conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit").fetchone()[0]
                self._conn.executemany(
                    "INSERT INTO audit (seq, ts, kind, ip, user, session, agent, key, alert_id, record)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(first + i, *row) for i, (row, _, _) in enumerate(batch)],
                )
                self._conn.commit()
                outcomes: list[Any] = [first + i for i in range(len(batch))]
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                self._conn.rollback()
                outcomes = [exc] * len(batch)
        for (_, loop, fut), outcome in zip(batch, outcomes):
            try:
                loop.call_soon_threadsafe(_resolve, fut, outcome)
            except RuntimeError:  # the caller's loop is gone; the record is stored anyway
                pass

    # ------------------------------------------------------------------ reading

    def query(self, *, kind: str | Iterable[str] | None = None, since_seq: int | None = None,
              identity: str | None = None, alert_id: str | None = None, limit: int = 100) -> list[dict]:
        """Records in sequence order: those after `since_seq`, or else the latest `limit`.

        `identity` matches an IP, user, session, agent or API-key fingerprint.
        """
        where, args = [], []
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args += kinds
        if since_seq is not None:
            where.append("seq > ?")
            args.append(int(since_seq))
        if identity is not None:
            where.append("(" + " OR ".join(f"{c} = ?" for c in _COLUMNS) + ")")
            args += [identity] * len(_COLUMNS)
        if alert_id is not None:
            where.append("alert_id = ?")
            args.append(alert_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = "ASC" if since_seq is not None else "DESC"
        limit = max(1, min(int(limit), 10_000))
        sql = f"SELECT seq, ts, kind, record FROM audit {clause} ORDER BY seq {order} LIMIT ?"
        with self._db_lock:
            rows = self._conn.execute(sql, (*args, limit)).fetchall()
        if order == "DESC":
            rows.reverse()
        return [{"seq": seq, "ts": ts, "kind": k, "record": orjson.loads(rec)} for seq, ts, k, rec in rows]

    async def aquery(self, **filters: Any) -> list[dict]:
        return await asyncio.to_thread(lambda: self.query(**filters))

    def stats(self) -> dict:
        """Count and sequence bounds; `gap_free` is checked, not assumed."""
        with self._db_lock:
            count, lo, hi = self._conn.execute("SELECT COUNT(*), MIN(seq), MAX(seq) FROM audit").fetchone()
        return {
            "path": str(self.path) if self.path else None,
            "records": count,
            "last_seq": hi or 0,
            "gap_free": count == 0 or (lo == 1 and hi == count),
        }

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._writer.join)
        with self._db_lock:
            self._conn.close()


def _resolve(fut: asyncio.Future, outcome: Any) -> None:
    if fut.done():
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)
