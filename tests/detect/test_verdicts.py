"""The verdict cache stays within its bound and its own accounting, also when two threads fill it
(the event loop inspects small requests while the inspection thread takes large ones)."""

from __future__ import annotations

import sys
import threading

from llm_firewall.detect.verdicts import VerdictCache


def test_bound_and_accounting_hold_under_two_writers() -> None:
    cache: VerdictCache[int] = VerdictCache(2_000)
    errors: list[BaseException] = []

    def fill(tag: str) -> None:
        try:
            for n in range(20_000):
                key = ("request", "user", f"{tag}-{n % 3_000}-" + "x" * (n % 17))
                cache.put(key, n)
                cache.get(key)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=fill, args=(tag,)) for tag in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    held = list(cache._items)
    assert cache.chars == sum(len(key[2]) for key in held) <= cache.max_chars
    assert len(set(held)) == len(held) == len(cache)


def test_large_texts_are_not_kept_and_oldest_go_first() -> None:
    cache: VerdictCache[str] = VerdictCache(640)
    cache.put(("request", "user", "y" * 11), "too long: above 1/64 of the bound")
    assert len(cache) == 0
    for n in range(100):
        cache.put(("request", "user", f"text {n:04d}"), str(n))  # 9 characters each
    assert cache.chars <= 640
    assert cache.get(("request", "user", "text 0000")) is None
    assert cache.get(("request", "user", "text 0099")) == "99"
