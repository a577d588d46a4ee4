"""Alert fan-out between replicas through a Redis stream, so every replica's admin API and live
feed show every replica's alerts.

A stream rather than pub/sub: a replica that was disconnected (or has just started) reads what
it missed from the last id it saw (bounded by the stream's MAXLEN), so a Redis blip or a restart
of one replica loses nothing still in the stream. Local alerts are queued by `AlertHub.publish_hook`
(synchronous, never blocks a request; a full queue drops the oldest and counts it) and written by
a background task; remote ones are added with `local=False` (the hub dedupes by alert_id, so an
alert never comes back to its origin twice). Both loops reconnect with capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


class AlertFanout:
    def __init__(self, url: str, hub: Any, *, replica: str = "replica", stream: str = "llmfw:alerts",
                 maxlen: int = 2000, history: int = 200, queue_size: int = 1000, block_ms: int = 1000,
                 timeout_s: float = 1.0, max_backoff_s: float = 2.0) -> None:
        self.hub = hub
        self.origin = f"{replica}:{uuid.uuid4().hex[:8]}"  # unique even when replicas share a hostname
        self.stream = stream
        self._maxlen = maxlen
        self._history = history
        self._block_ms = block_ms
        self._max_backoff = max_backoff_s
        common = {"retry": Retry(NoBackoff(), 0), "socket_connect_timeout": timeout_s}
        # Any: redis-py types every reply bytes | str | None whatever decode_responses says (here bytes)
        self._writer: Any = aioredis.from_url(url, socket_timeout=timeout_s, **common)
        # the reader blocks server-side for block_ms, so its socket timeout must outlast that
        self._reader: Any = aioredis.from_url(url, socket_timeout=timeout_s + block_ms / 1000, **common)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._last_id: str | None = None
        self.stats = {"published": 0, "received": 0, "dropped": 0, "errors": 0, "connected": False}

    def publish(self, alert: dict[str, Any]) -> None:
        """AlertHub.publish_hook: enqueue without waiting; the oldest alert makes room if full."""
        if self._queue.full():
            self._queue.get_nowait()
            self.stats["dropped"] += 1
        self._queue.put_nowait(alert)

    async def start(self) -> None:
        self.hub.publish_hook = self.publish
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._publish_loop(), name="alert-fanout-publish"),
                       loop.create_task(self._read_loop(), name="alert-fanout-read")]

    async def stop(self) -> None:
        if self.hub.publish_hook == self.publish:
            self.hub.publish_hook = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in (self._writer, self._reader):
            try:
                await asyncio.wait_for(client.aclose(), 1.0)
            except Exception:  # noqa: BLE001 - closing a dead connection is not an error
                pass

    async def _backoff(self, attempt: int, what: str, exc: BaseException) -> int:
        self.stats["errors"] += 1
        if attempt == 0:
            log.warning("alert fan-out %s failed (%s: %s); retrying", what, type(exc).__name__, exc)
        await asyncio.sleep(min(self._max_backoff, 0.1 * 2 ** attempt))
        return attempt + 1

    async def _publish_loop(self) -> None:
        attempt = 0
        while True:
            alert = await self._queue.get()
            payload = orjson.dumps({"origin": self.origin, "alert": alert}, default=str)
            while True:
                try:
                    await self._writer.xadd(self.stream, {"a": payload}, maxlen=self._maxlen, approximate=True)
                    self.stats["published"] += 1
                    attempt = 0
                    break
                except _FAILURES as exc:
                    attempt = await self._backoff(attempt, "publish", exc)

    async def _read_loop(self) -> None:
        attempt = 0
        while True:
            try:
                if self._last_id is None:  # first connection: load recent history, then follow
                    recent = await self._reader.xrevrange(self.stream, count=self._history)
                    self._last_id = recent[0][0].decode() if recent else "0-0"
                    for _entry_id, fields in reversed(recent):
                        self._deliver(fields)
                reply = await self._reader.xread({self.stream: self._last_id}, block=self._block_ms, count=500)
                self.stats["connected"] = True
                if attempt:
                    log.warning("alert fan-out reconnected")
                attempt = 0
                for _stream, entries in reply or ():
                    for entry_id, fields in entries:
                        self._last_id = entry_id.decode()
                        self._deliver(fields)
            except _FAILURES as exc:
                self.stats["connected"] = False
                attempt = await self._backoff(attempt, "subscription", exc)
                await self._maybe_restarted()

    async def _maybe_restarted(self) -> None:
        """After Redis lost its data the stream restarts at lower ids: follow it from the start."""
        try:
            last = await self._reader.xrevrange(self.stream, count=1)
        except _FAILURES:
            return
        if self._last_id and (not last or _id_tuple(last[0][0].decode()) < _id_tuple(self._last_id)):
            self._last_id = "0-0"

    def _deliver(self, fields: dict[bytes, bytes]) -> None:
        try:
            msg = orjson.loads(fields[b"a"])
        except (KeyError, orjson.JSONDecodeError):
            return
        if msg.get("origin") == self.origin or not isinstance(msg.get("alert"), dict):
            return
        alert = msg["alert"]
        if "alert_id" not in alert:
            return
        alert.setdefault("remediation_taken", [])
        self.stats["received"] += 1
        self.hub.add(alert, local=False)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


__all__ = ["AlertFanout"]
