"""Bounded queues between SOC stages, with an explicit policy for what a full queue drops.

The inline path hands every alert to the SOC with `put_nowait`, which never waits: when the
SOC falls behind, events are dropped and counted (never silently, never by slowing a request),
and a queue that stays above 80 % for a while raises a saturation alert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

STRATEGIES = ("drop_oldest", "drop_newest", "block")


class BoundedQueue:
    """asyncio queue with a drop strategy, counters and a saturation callback.

    - ``drop_oldest``: a full queue evicts its oldest item to admit the new one.
    - ``drop_newest``: a full queue refuses the new item.
    - ``block``: `put` waits up to its timeout for room, then drops the new item; `put_nowait`
      never waits and behaves like ``drop_newest``.
    """

    def __init__(
        self,
        name: str,
        maxsize: int = 1000,
        *,
        strategy: str = "drop_oldest",
        block_timeout_s: float = 1.0,
        saturation_ratio: float = 0.8,
        saturation_after_s: float = 5.0,
        on_saturation: Callable[[str, dict], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"queue {name!r}: strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if maxsize < 1:
            raise ValueError(f"queue {name!r}: maxsize must be >= 1")
        self.name = name
        self.maxsize = maxsize
        self.strategy = strategy
        self.block_timeout_s = block_timeout_s
        self.saturation_ratio = saturation_ratio
        self.saturation_after_s = saturation_after_s
        self.on_saturation = on_saturation
        self._clock = clock
        self._q: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.accepted = 0
        self.dropped = 0
        self.high_water = 0
        self.saturation_alerts = 0
        self._saturated_since: float | None = None
        self._saturation_reported = False

    # -- producers -----------------------------------------------------------------------------
    def put_nowait(self, item: Any) -> bool:
        """Enqueue without waiting; returns False when `item` itself was dropped."""
        try:
            self._q.put_nowait(item)
        except asyncio.QueueFull:
            if self.strategy != "drop_oldest":
                self.dropped += 1
                self.check()
                return False
            try:
                self._q.get_nowait()
            except asyncio.QueueEmpty:  # pragma: no cover - a consumer raced us to it
                pass
            else:
                self.dropped += 1
            self._q.put_nowait(item)
        self.accepted += 1
        self.check()
        return True

    async def put(self, item: Any, timeout: float | None = None) -> bool:  # noqa: ASYNC109  (overrides block_timeout_s)
        """Enqueue; with the ``block`` strategy wait up to `timeout` for room, then drop."""
        if self.strategy != "block" or not self._q.full():
            return self.put_nowait(item)
        wait = self.block_timeout_s if timeout is None else timeout
        try:
            await asyncio.wait_for(self._q.put(item), wait)
        except TimeoutError:
            self.dropped += 1
            self.check()
            return False
        self.accepted += 1
        self.check()
        return True

    # -- consumers -----------------------------------------------------------------------------
    async def get(self) -> Any:
        item = await self._q.get()
        self.check()
        return item

    def get_nowait(self) -> Any:
        item = self._q.get_nowait()
        self.check()
        return item

    def empty(self) -> bool:
        return self._q.empty()

    def __len__(self) -> int:
        return self._q.qsize()

    # -- watching ------------------------------------------------------------------------------
    def check(self) -> None:
        """Update high-water and saturation; the pipeline also calls it periodically so a
        queue stuck full with no traffic still raises its alert."""
        depth = self._q.qsize()
        if depth > self.high_water:
            self.high_water = depth
        if depth < self.saturation_ratio * self.maxsize:
            self._saturated_since = None
            self._saturation_reported = False
            return
        now = self._clock()
        if self._saturated_since is None:
            self._saturated_since = now
        if not self._saturation_reported and now - self._saturated_since >= self.saturation_after_s:
            self._saturation_reported = True
            self.saturation_alerts += 1
            log.warning("queue %s saturated: depth %d of %d, %d dropped", self.name, depth, self.maxsize, self.dropped)
            if self.on_saturation is not None:
                try:
                    self.on_saturation(self.name, self.stats())
                except Exception:
                    log.exception("queue %s: saturation hook failed", self.name)

    @property
    def saturated(self) -> bool:
        return self._saturation_reported

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "strategy": self.strategy,
            "depth": self._q.qsize(),
            "maxsize": self.maxsize,
            "accepted": self.accepted,
            "drops": self.dropped,
            "high_water": self.high_water,
            "saturated": self._saturation_reported,
            "saturation_alerts": self.saturation_alerts,
        }
