import asyncio

from llm_firewall.reliability import ExecutionTracker, MemoryClaimStore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_key_claimed_once_within_ttl_then_again_after_expiry():
    clock = Clock()
    tracker = ExecutionTracker(ttl_s=60, clock=clock)
    assert await tracker.claim("pb-1:0")
    assert not await tracker.claim("pb-1:0")
    assert await tracker.claim("pb-1:1")
    clock.now = 61
    assert await tracker.claim("pb-1:0")
    assert tracker.stats()["duplicates"] == 1


async def test_concurrent_claims_in_one_process_win_once():
    tracker = ExecutionTracker(store=MemoryClaimStore())
    results = await asyncio.gather(*(tracker.claim("same") for _ in range(20)))
    assert results.count(True) == 1


async def test_two_replicas_sharing_a_store_race_and_execute_once():
    class SlowStore(MemoryClaimStore):
        async def claim(self, key, ttl_s, now):
            await asyncio.sleep(0.01)  # the network round trip where races happen
            return await super().claim(key, ttl_s, now)

    store = SlowStore()
    a, b = ExecutionTracker(store=store), ExecutionTracker(store=store)
    results = await asyncio.gather(a.claim("k"), b.claim("k"), a.claim("k"), b.claim("k"))
    assert results.count(True) == 1


async def test_released_key_may_run_again_and_store_failure_is_counted():
    class DownStore:
        async def claim(self, key, ttl_s, now):
            raise ConnectionError("redis down")

    tracker = ExecutionTracker(store=DownStore())
    assert await tracker.claim("k")  # fail open: local claim still deduplicates
    assert not await tracker.claim("k")
    await tracker.release("k")
    assert await tracker.claim("k")
    assert tracker.stats()["store_errors"] == 2

    closed = ExecutionTracker(store=DownStore(), fail_open=False)
    assert not await closed.claim("k")
