import asyncio
import random

import pytest

from llm_firewall.reliability import CircuitBreaker, CircuitOpenError, backoff_delays, retry_async


def test_delays_grow_exponentially_within_jitter_band_and_cap():
    delays = backoff_delays(6, 0.5, 4.0, jitter=0.5, rng=random.Random(7))
    assert len(delays) == 5
    steps = [0.5, 1.0, 2.0, 4.0, 4.0]
    for d, step in zip(delays, steps, strict=True):
        assert step * 0.5 <= d <= step


def test_no_jitter_is_exact_and_jitter_varies():
    assert backoff_delays(4, 1.0, 10.0, jitter=0.0) == [1.0, 2.0, 4.0]
    a = backoff_delays(8, 1.0, 100.0, rng=random.Random(1))
    b = backoff_delays(8, 1.0, 100.0, rng=random.Random(2))
    assert a != b
    assert backoff_delays(1, 1.0, 10.0) == []


async def test_retries_until_success_and_sleeps_the_backoff():
    slept: list[float] = []
    calls = 0

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("down")
        return "ok"

    out = await retry_async(flaky, attempts=5, base_s=1, max_s=8, retry_on=(ConnectionError,),
                            sleep=fake_sleep, jitter=0.0)
    assert out == "ok" and calls == 3
    assert slept == [1.0, 2.0]


async def test_gives_up_after_attempts_and_does_not_retry_other_errors():
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    async def nosleep(_: float) -> None:
        return None

    with pytest.raises(ConnectionError):
        await retry_async(down, attempts=3, base_s=0, max_s=0, retry_on=(ConnectionError,), sleep=nosleep)
    assert calls == 3

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad request")

    calls = 0
    with pytest.raises(ValueError):
        await retry_async(bad, attempts=3, base_s=0, max_s=0, retry_on=(ConnectionError,), sleep=nosleep)
    assert calls == 1


async def test_breaker_opens_during_retries_and_then_short_circuits():
    breaker = CircuitBreaker("t", failure_threshold=2, reset_timeout_s=60)
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with pytest.raises(CircuitOpenError) as info:
        await retry_async(down, attempts=5, base_s=0, max_s=0, retry_on=(ConnectionError,),
                          breaker=breaker, sleep=lambda s: asyncio.sleep(0))
    assert calls == 2
    assert breaker.state == "open"
    assert info.value.retry_after > 0
