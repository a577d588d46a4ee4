"""Durations as policies and playbooks write them ("90s", "10m", "1h", "2d", a number of seconds),
and the default length of each timed sanction: one definition, so an action means the same
whether a policy file or the SOC wrote it."""

from __future__ import annotations

import re
from typing import Any

PERMANENT = "permanent"

DEFAULT_DURATIONS: dict[str, float] = {
    "terminate_session": 86400.0,  # session ids are ephemeral; a day outlives any real session
    "suspend_user": 900.0,
    "isolate_agent": 3600.0,
    "block_ip": 3600.0,
    "block_ip_range": 3600.0,
}

DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$"  # also the JSON Schema of a duration
_DURATION = re.compile(DURATION_PATTERN)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def parse_seconds(value: Any) -> float:
    """Seconds from a number or a string like '90s', '10m', '1h'; ValueError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as 90s, 10m, 1h, 2d; got {value!r}")
