"""Rate-limit arithmetic (GCRA), pure: the caller supplies the stored state and the clock.

GCRA keeps one number per bucket (the "theoretical arrival time"), so the same arithmetic runs
in memory or as one atomic Redis script. `limit` requests per `window_s` are admitted as a burst,
then one more every window_s/limit seconds. A refused request does not consume capacity. A hit
may cost more than one unit (a request body's KiB against a size limit); a cost above `limit`
is charged as `limit`, so one oversized request is still admitted by a full allowance.
"""

from __future__ import annotations

import math

from llm_firewall.enforce.state import RateResult

_EPS = 1e-9


def gcra(tat: float | None, limit: int, window_s: float, now: float,
         cost: int = 1) -> tuple[float | None, RateResult]:
    """One hit of `cost` units on a bucket whose stored arrival time is `tat` (None: fresh).

    Returns the new stored value (None: unchanged, the hit was refused) and the result.
    """
    if limit <= 0:
        return None, RateResult(False, window_s, 0, limit)
    interval = window_s / limit
    base = max(tat if tat is not None else now, now)
    new_tat = base + interval * min(max(cost, 1), limit)
    if new_tat - now > window_s + _EPS:
        retry_after = new_tat - now - window_s
        return None, RateResult(False, retry_after, 0, limit)
    remaining = math.floor((window_s - (new_tat - now)) / interval + _EPS)
    return new_tat, RateResult(True, 0.0, max(remaining, 0), limit)

