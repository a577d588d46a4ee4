"""Builder agent: turns what the inline path reports into SOC alerts.

Inline alerts are normalised into one alert shape; traffic signals (one per request) feed
per-identity counters that notice bursts and clients who keep hitting their rate limit, which
the inline path cannot see one request at a time. Memory is bounded: counters live in TTL
caches keyed by identity.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

from llm_firewall.domain import SEVERITY_RANK, THREATS
from llm_firewall.redact import redact_secrets

RECOMMENDATIONS = ("block", "investigate", "monitor")
_ids = itertools.count(1)


def recommendation_for(fp: float | None, severity: str) -> str:
    """The DESIGN bands: block below 0.3, investigate to 0.7, monitor above."""
    if fp is None:
        return "block" if SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK["high"] else "investigate"
    if fp < 0.3:
        return "block"
    return "investigate" if fp <= 0.7 else "monitor"


class SlidingCounter:
    """Per-key event counts over a sliding window; fires once per cooldown when over a limit."""

    def __init__(self, limit: int, window_s: float, cooldown_s: float, clock: Callable[[], float],
                 maxsize: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._hits: TTLCache[str, deque[float]] = TTLCache(maxsize, window_s, timer=clock)
        self._quiet: TTLCache[str, bool] = TTLCache(maxsize, cooldown_s, timer=clock)

    def hit(self, key: str) -> int | None:
        """Count one event; returns the count in the window when it crosses the limit."""
        now = self._clock()
        dq = self._hits.get(key)
        if dq is None:
            dq = deque(maxlen=self.limit + 1)
        dq.append(now)
        self._hits[key] = dq  # re-insert: the TTL restarts with every event
        while dq and now - dq[0] > self.window_s:
            dq.popleft()
        if len(dq) > self.limit and key not in self._quiet:
            self._quiet[key] = True
            return len(dq)
        return None


class Builder:
    """Normalises events; returns the alerts they give rise to (pure apart from the clock)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        burst_limit: int = 120,
        burst_window_s: float = 10.0,
        abuse_limit: int = 10,
        abuse_window_s: float = 60.0,
        cooldown_s: float = 300.0,
        abuse_actions: list[Any] | None = None,
    ) -> None:
        self._clock = clock
        self.bursts = SlidingCounter(burst_limit, burst_window_s, cooldown_s, clock)
        self.abuse = SlidingCounter(abuse_limit, abuse_window_s, cooldown_s, clock)
        self.abuse_actions = abuse_actions if abuse_actions is not None else [{"block_ip": {"duration_s": 900}}]
        self.counts = {"events": 0, "alerts": 0, "signals": 0, "invalid": 0, "abuse_alerts": 0}

    def handle(self, event: Any) -> list[dict[str, Any]]:
        self.counts["events"] += 1
        if not isinstance(event, dict):
            self.counts["invalid"] += 1
            return []
        kind = event.get("type") or event.get("kind")
        if kind in ("alert", None) and event.get("threat"):
            self.counts["alerts"] += 1
            return [self.normalise_alert(event)]
        if kind in ("request", "traffic", "signal"):
            self.counts["signals"] += 1
            return self.traffic(event)
        self.counts["invalid"] += 1
        return []

    def normalise_alert(self, event: dict[str, Any]) -> dict[str, Any]:
        severity = str(event.get("severity", "medium"))
        if severity not in SEVERITY_RANK:
            severity = "medium"
        threat = str(event.get("threat") or event.get("threat_type") or "")
        fp = event.get("fp_probability")
        fp = float(fp) if isinstance(fp, (int, float)) and not isinstance(fp, bool) else None
        rec = event.get("recommendation")
        if rec not in RECOMMENDATIONS:
            rec = recommendation_for(fp, severity)
        rule_ids = event.get("rule_ids") or ([event["rule_id"]] if event.get("rule_id") else [])
        return {
            "type": "alert",
            "alert_id": str(event.get("alert_id") or f"soc-{next(_ids)}"),
            "source": str(event.get("source", "inline")),
            "ts": float(event.get("ts") or self._clock()),
            "threat": threat if threat in THREATS else threat or "unknown",
            "category": event.get("category"),
            "severity": severity,
            "title": redact_secrets(str(event.get("title", "")))[:200],
            "rule_ids": [str(r) for r in rule_ids][:20],
            "fp_probability": fp,
            "recommendation": rec,
            "excerpt": redact_secrets(str(event.get("excerpt", "")))[:500],
            "role": event.get("role"),
            "identity": _identity(event),
            "soc_actions": list(event.get("soc_actions") or []),
            "actions_taken": list(event.get("actions_taken") or []),
        }

    def traffic(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        identity = _identity(event)
        limited = event.get("status") == 429 or event.get("outcome") == "rate_limited"
        out = []
        for subject in ("user", "ip"):
            value = identity.get(subject)
            if not value:
                continue
            key = f"{subject}:{value}"
            burst = self.bursts.hit(key)
            if burst is not None:
                out.append(self._abuse_alert(identity, subject, burst, "burst", "medium", "investigate"))
            if limited:
                n = self.abuse.hit(key)
                if n is not None:
                    out.append(self._abuse_alert(identity, subject, n, "rate_limited", "high", "block"))
            break  # one subject per identity: the user when known, else the IP
        return out

    def _abuse_alert(self, identity: dict[str, str], subject: str, n: int, what: str, severity: str,
                     rec: str) -> dict[str, Any]:
        self.counts["abuse_alerts"] += 1
        counter = self.bursts if what == "burst" else self.abuse
        title = (f"Request burst: {n} requests in {counter.window_s:g}s" if what == "burst"
                 else f"Rate-limit abuse: {n} limited requests in {counter.window_s:g}s")
        return {
            "type": "alert",
            "alert_id": f"soc-{next(_ids)}",
            "source": "builder",
            "ts": self._clock(),
            "threat": "rate_limit_abuse",
            "category": what,
            "severity": severity,
            "title": title,
            "rule_ids": [f"SOC-{what.upper()}"],
            "fp_probability": None,
            "recommendation": rec,
            "excerpt": "",
            "identity": {subject: identity[subject], **{k: identity[k] for k in ("ip", "scope") if k in identity}},
            "soc_actions": list(self.abuse_actions),
            "actions_taken": [],
        }


def _identity(event: dict[str, Any]) -> dict[str, str]:
    given = event.get("identity")
    src = given if isinstance(given, dict) else event
    out = {}
    for name in ("ip", "user", "session", "key", "agent", "scope"):
        value = src.get(name) or (src.get("api_key_hash") if name == "key" else None)
        if value:
            out[name] = str(value)[:256]
    return out
