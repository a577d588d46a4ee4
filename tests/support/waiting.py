"""Polling for a condition that becomes true as a server catches up, bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, every: float = 0.05) -> bool:
    """True as soon as `predicate()` is; False if it is still false after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
