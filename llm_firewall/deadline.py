"""A total time limit for a long task, told apart from every other cancellation."""

from __future__ import annotations

import asyncio


class Deadline:
    """Cancels the current task `seconds` from now, the way `asyncio.timeout` does.

    For code that must answer the expiry itself (a stream ends with an error event) from inside
    its own `try`: after catching `CancelledError`, `reached()` says whether this deadline caused
    it and, if so, takes the cancellation back so the task can finish normally. Call `cancel()`
    when the work ends.
    """

    __slots__ = ("_task", "_base", "_fired", "_handle")

    def __init__(self, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None, "a Deadline belongs to a running task"
        self._task = task
        self._base = task.cancelling()
        self._fired = False
        self._handle = asyncio.get_running_loop().call_later(seconds, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def reached(self) -> bool:
        if not self._fired:
            return False
        self._fired = False
        return self._task.uncancel() <= self._base  # no other cancellation is pending

    def cancel(self) -> None:
        self._handle.cancel()
