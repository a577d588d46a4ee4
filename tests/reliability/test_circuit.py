import pytest

from llm_firewall.reliability import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kw):
    clock = Clock()
    changes: list[tuple[str, str, str]] = []
    cb = CircuitBreaker("upstream", clock=clock, **kw)
    cb.on_change = lambda name, old, new: changes.append((name, old, new))
    return cb, clock, changes


def test_opens_after_threshold_consecutive_failures_only():
    cb, _clock, changes = make(failure_threshold=3, reset_timeout_s=10)
    cb.record_failure()
    cb.record_failure()
    cb.record_success()  # resets the streak
    cb.record_failure()
    cb.record_failure()
    assert cb.state == "closed" and cb.allow()
    cb.record_failure()
    assert cb.state == "open"
    assert not cb.allow()
    assert cb.retry_after() == pytest.approx(10.0)
    assert changes == [("upstream", "closed", "open")]


def test_open_turns_half_open_after_timeout_and_admits_limited_probes():
    cb, clock, changes = make(failure_threshold=1, reset_timeout_s=5, half_open_max_calls=2)
    cb.record_failure()
    clock.now += 4.0
    assert cb.state == "open"
    assert cb.retry_after() == pytest.approx(1.0)
    clock.now += 1.0
    assert cb.state == "half_open"
    assert cb.retry_after() == 0.0
    assert cb.allow() and cb.allow()
    assert not cb.allow()  # third probe refused while two are in flight
    cb.record_success()
    assert cb.state == "closed" and cb.allow()
    assert [c[1:] for c in changes] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_failed_probe_reopens_for_a_full_timeout():
    cb, clock, _changes = make(failure_threshold=2, reset_timeout_s=10)
    cb.record_failure()
    cb.record_failure()
    clock.now += 10
    assert cb.allow()  # the probe
    cb.record_failure()
    assert cb.state == "open"
    assert cb.retry_after() == pytest.approx(10.0)
    assert cb.opened_count == 2


def test_released_probe_slot_can_be_used_again():
    cb, clock, _ = make(failure_threshold=1, reset_timeout_s=1)
    cb.record_failure()
    clock.now += 1
    assert cb.allow()
    assert not cb.allow()
    cb.release()
    assert cb.allow()


def test_broken_hook_does_not_break_the_breaker():
    cb = CircuitBreaker("x", failure_threshold=1, clock=Clock())

    def boom(*_):
        raise RuntimeError("metrics down")

    cb.on_change = boom
    cb.record_failure()
    assert cb.state == "open"


def test_invalid_configuration_is_refused():
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_threshold=0)
