"""Remembered verdicts for texts already inspected, bounded by the characters they hold.

Why: an application sends the same system prompt on every request and a chat client resends
the whole conversation each turn, so most of the text the firewall sees it has already judged.
The rules and the learned model are pure functions of (direction, role, text), so the findings
can be kept and handed out again; scoring and the policy decision still run on every request.

Eviction is first-in first-out over an OrderedDict: a lookup is one dict probe, popping the
oldest is O(1), and a text that stays hot is simply judged again after it ages out. (A plain
dict's first entry sits behind every entry deleted before it, so finding it cost ~2 µs a put
once the cache was full.) Large requests are inspected on a worker thread while the event loop
inspects small ones, so changes hold a lock; a lookup is a single dict probe and needs none.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")
Key = tuple[str, str, str]  # (direction, role, text)


class VerdictCache(Generic[V]):
    """At most `max_chars` characters of text held as keys; texts above 1/64 of it are not kept."""

    __slots__ = ("max_chars", "max_text", "_items", "_chars", "_lock", "hits", "misses")

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.max_text = max(1, max_chars // 64)
        self._items: OrderedDict[Key, V] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Key) -> V | None:
        value = self._items.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: Key, value: V) -> None:
        size = len(key[2])
        if size > self.max_text:
            return
        with self._lock:
            items = self._items
            if key in items:
                return
            items[key] = value
            self._chars += size
            while self._chars > self.max_chars:
                oldest, _ = items.popitem(last=False)
                self._chars -= len(oldest[2])

    def __len__(self) -> int:
        return len(self._items)

    @property
    def chars(self) -> int:
        return self._chars
