"""Execute-once guard for remediation actions.

A playbook can reach the remediator twice (a retried submission, two analysts, two replicas).
Each action carries an idempotency key; the first claim of a key within the TTL wins and every
later claim is refused. Keys are remembered locally (bounded TTL cache) and, when a shared store
is given (e.g. Redis ``SET NX EX``), also claimed there so racing replicas execute once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from cachetools import TTLCache

log = logging.getLogger(__name__)


class ClaimStore(Protocol):
    async def claim(self, key: str, ttl_s: float, now: float) -> bool:
        """Atomically record `key` for `ttl_s` seconds; True only for the first caller."""
        ...


class MemoryClaimStore:
    """In-process ClaimStore: the reference behaviour a shared (Redis) store must match."""

    def __init__(self, maxsize: int = 100_000) -> None:
        self._expiry: dict[str, float] = {}
        self._maxsize = maxsize

    async def claim(self, key: str, ttl_s: float, now: float) -> bool:
        expires = self._expiry.get(key)
        if expires is not None and expires > now:
            return False
        if len(self._expiry) >= self._maxsize:
            self._expiry = {k: t for k, t in self._expiry.items() if t > now}
        self._expiry[key] = now + ttl_s
        return True

    async def release(self, key: str) -> None:
        self._expiry.pop(key, None)


class ExecutionTracker:
    """Deduplication window for idempotency keys (see module docstring).

    When the shared store fails, the local claim still holds and the action runs (`fail_open`,
    the default) or is skipped (`fail_open=False`); either way the failure is counted.
    """

    def __init__(
        self,
        ttl_s: float = 600.0,
        maxsize: int = 100_000,
        store: ClaimStore | None = None,
        clock: Callable[[], float] = time.time,
        *,
        fail_open: bool = True,
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._seen: TTLCache[str, float] = TTLCache(maxsize=maxsize, ttl=ttl_s, timer=clock)
        self._store = store
        self._fail_open = fail_open
        self.claimed = 0
        self.duplicates = 0
        self.store_errors = 0

    async def claim(self, key: str) -> bool:
        """True exactly once per key within the TTL (across replicas when a store is shared)."""
        if key in self._seen:
            self.duplicates += 1
            return False
        # Mark locally before awaiting so a concurrent claim in this process loses at once.
        now = self._clock()
        self._seen[key] = now
        if self._store is not None:
            try:
                won = await self._store.claim(key, self.ttl_s, now)
            except Exception as exc:  # noqa: BLE001 - shared store down: counted, behaviour configurable
                self.store_errors += 1
                log.warning("idempotency store failed for a claim: %s", type(exc).__name__)
                won = self._fail_open
            if not won:
                self.duplicates += 1
                return False
        self.claimed += 1
        return True

    async def release(self, key: str) -> None:
        """Forget a key whose action failed, so a later submission may execute it again."""
        self._seen.pop(key, None)
        release = getattr(self._store, "release", None)
        if release is not None:
            try:
                await release(key)
            except Exception as exc:  # noqa: BLE001 - the claim expires on its own: counted, logged
                self.store_errors += 1
                log.warning("idempotency store failed to release a key: %s", type(exc).__name__)

    def stats(self) -> dict[str, int]:
        return {
            "claimed": self.claimed,
            "duplicates": self.duplicates,
            "store_errors": self.store_errors,
            "remembered": len(self._seen),
        }
