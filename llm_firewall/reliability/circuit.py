"""Circuit breaker: stop calling a target that keeps failing, probe it again after a pause.

Pure (no I/O, injected clock) so the upstream proxy, the webhook notifier and the LLM analyst
share one implementation and tests can walk it through every transition without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpenError(Exception):
    """Raised instead of calling a target whose breaker is open."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry after {retry_after:.1f}s")
        self.name = name
        self.retry_after = retry_after


class CircuitBreaker:
    """closed -> open after `failure_threshold` consecutive failures; open -> half_open after
    `reset_timeout_s`; half_open admits `half_open_max_calls` probes: a success closes it, a
    failure opens it again for another `reset_timeout_s`."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 10.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if reset_timeout_s < 0:
            raise ValueError("reset_timeout_s must be >= 0")
        if half_open_max_calls < 1:
            raise ValueError("half_open_max_calls must be >= 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.half_open_max_calls = half_open_max_calls
        self.on_change: Callable[[str, str, str], None] | None = None
        self._clock = clock
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0  # probes admitted in the current half-open period
        self.opened_count = 0  # how many times it has opened (for status/metrics)

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self._state == OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
            self._set(HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def _set(self, new: str) -> None:
        old = self._state
        if old == new:
            return
        self._state = new
        if new == OPEN:
            self._opened_at = self._clock()
            self.opened_count += 1
        if new == HALF_OPEN:
            self._probes = 0
        if new == CLOSED:
            self._failures = 0
        log.info("circuit %s: %s -> %s", self.name, old, new)
        if self.on_change is not None:
            try:
                self.on_change(self.name, old, new)
            except Exception:  # a broken metrics hook must not break the caller
                log.exception("circuit %s: on_change hook failed", self.name)

    # -- gate --------------------------------------------------------------------------------
    def allow(self) -> bool:
        """May a call go out now? In half_open this consumes one probe slot."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN:
            return False
        if self._probes < self.half_open_max_calls:
            self._probes += 1
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until a call may be admitted (0 when one would be admitted now)."""
        state = self.state
        if state == CLOSED:
            return 0.0
        if state == OPEN:
            return max(0.0, self._opened_at + self.reset_timeout_s - self._clock())
        if self._probes < self.half_open_max_calls:
            return 0.0
        # probes are in flight; their outcome is due soon, do not promise more than a second
        return min(1.0, self.reset_timeout_s) or 0.0

    # -- outcomes ----------------------------------------------------------------------------
    def record_success(self) -> None:
        if self.state == HALF_OPEN:
            self._set(CLOSED)
        self._failures = 0

    def record_failure(self) -> None:
        state = self.state
        if state == HALF_OPEN:
            self._set(OPEN)
            return
        if state == OPEN:
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._set(OPEN)

    def release(self) -> None:
        """Give back a half-open probe slot whose call ended with no verdict (cancelled)."""
        if self._state == HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def snapshot(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state,
            "consecutive_failures": self._failures,
            "opened_count": self.opened_count,
            "retry_after_s": round(self.retry_after(), 3),
        }
