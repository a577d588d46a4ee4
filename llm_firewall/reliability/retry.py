"""Retries with exponential backoff and jitter, optionally gated by a circuit breaker.

Jitter spreads the retries of many callers that failed together (a webhook target that came
back) so they do not hammer the target in lock-step.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from llm_firewall.reliability.circuit import CircuitBreaker, CircuitOpenError

T = TypeVar("T")


def backoff_delays(
    attempts: int,
    base_s: float,
    max_s: float,
    *,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> list[float]:
    """The waits between `attempts` tries (so ``attempts - 1`` values).

    Wait i is ``min(max_s, base_s * 2**i)`` scaled by a random factor in ``[1 - jitter, 1]``:
    never above the cap, never below ``(1 - jitter)`` of the exponential step.
    """
    if attempts < 0 or base_s < 0 or max_s < 0 or not 0.0 <= jitter <= 1.0:
        raise ValueError("attempts, base_s, max_s must be >= 0 and jitter within [0, 1]")
    rng = rng or random.Random()
    out: list[float] = []
    for i in range(max(attempts - 1, 0)):
        step = min(max_s, base_s * (2.0**i))
        out.append(step * (1.0 - jitter + jitter * rng.random()))
    return out


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    base_s: float,
    max_s: float,
    retry_on: tuple[type[BaseException], ...],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    breaker: CircuitBreaker | None = None,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> T:
    """Call `fn` up to `attempts` times, waiting with backoff after each retryable failure.

    Exceptions outside `retry_on` propagate at once (they still count as breaker failures).
    While `breaker` is open no call is made and :class:`CircuitOpenError` is raised.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    delays = backoff_delays(attempts, base_s, max_s, jitter=jitter, rng=rng)
    for attempt in range(attempts):
        if breaker is not None and not breaker.allow():
            raise CircuitOpenError(breaker.name, breaker.retry_after())
        try:
            result = await fn()
        except asyncio.CancelledError:
            if breaker is not None:
                breaker.release()
            raise
        except retry_on:
            if breaker is not None:
                breaker.record_failure()
            if attempt == attempts - 1:
                raise
            await sleep(delays[attempt])
            continue
        except Exception:
            if breaker is not None:
                breaker.record_failure()
            raise
        if breaker is not None:
            breaker.record_success()
        return result
    raise AssertionError("unreachable")  # pragma: no cover
