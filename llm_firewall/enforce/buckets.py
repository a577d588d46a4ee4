"""Rate-limit buckets in memory: one GCRA arrival time per bucket, bounded, expired lazily.

Why not an LRU cache plus an expiry heap: with many clients nearly every hit finds its bucket
already expired (a client's next request comes after its allowance has refilled), so each hit
paid a heap pop, an LRU delete, an LRU insert and a heap push, ~1.6 µs more per request than
this. Here the buckets sit in one `OrderedDict` in order of their last hit; each hit looks at
the least recently hit bucket and drops it when its arrival time has passed, or moves it to the
end when it has not. Buckets of clients that went away are thus dropped within about one pass
over the table, so memory follows recent traffic; above `max_entries` the least recently hit
bucket is evicted (and counted).
"""

from __future__ import annotations

from collections import OrderedDict

from llm_firewall.enforce.ratelimit import gcra
from llm_firewall.enforce.state import RateResult

_LOOKS_PER_HIT = 2  # more than one, so the table shrinks when traffic does


class Buckets:
    def __init__(self, max_entries: int) -> None:
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._tat)

    def hit(self, bucket: str, limit: int, window_s: float, now: float, cost: int = 1) -> RateResult:
        tat = self._tat
        for _ in range(_LOOKS_PER_HIT):
            if not tat:
                break
            oldest, arrival = next(iter(tat.items()))
            if arrival > now:
                tat.move_to_end(oldest)
                break
            del tat[oldest]  # fully recovered: the same as a fresh bucket
        new_tat, result = gcra(tat.get(bucket), limit, window_s, now, cost)
        if new_tat is not None:
            tat[bucket] = new_tat
            tat.move_to_end(bucket)
            if len(tat) > self._max:
                tat.popitem(last=False)
                self.evicted += 1
        return result

    def drop(self, bucket: str) -> None:
        self._tat.pop(bucket, None)
