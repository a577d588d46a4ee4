"""Polling for a condition that becomes true as a server catches up, bounded in time, and
for a server's liveness while it works."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable

from tests.support.firewall import Firewall


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, every: float = 0.05) -> bool:
    """True as soon as `predicate()` is; False if it is still false after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


def healthz_while(fw: Firewall, work: threading.Thread) -> list[float]:
    """Seconds each /healthz took while `work` ran (the event loop's responsiveness)."""
    times = []
    work.start()
    while work.is_alive() and len(times) < 50:
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", fw.port, timeout=30)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
        times.append(time.perf_counter() - started)
    work.join(60)
    return times
