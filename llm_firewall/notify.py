"""Webhook notifications (Slack-compatible or generic JSON) that can never hurt the caller.

Each target gets its own circuit breaker, so one dead receiver costs nothing after it opened;
retries use exponential backoff with jitter; a notification that finally fails goes to a
dead-letter hook (the server writes it to the audit trail). Payloads are redacted first, and a
target URL (Slack hook URLs carry their token in the path) is only ever shown in masked form.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable

import aiohttp

from llm_firewall.redact import mask_url, redact_secrets, redact_value
from llm_firewall.reliability.circuit import CircuitBreaker, CircuitOpenError
from llm_firewall.reliability.retry import retry_async

log = logging.getLogger(__name__)

DeadLetterHook = Callable[[str, dict, str], Awaitable[None] | None]


def slack_text(payload: dict) -> str:
    """One readable line for a chat channel from an alert-like payload."""
    if isinstance(payload.get("text"), str):
        return payload["text"]
    sev = str(payload.get("severity", "")).upper()
    head = " ".join(p for p in (sev, str(payload.get("threat", "")), str(payload.get("title", ""))) if p)
    rest = {k: v for k, v in payload.items() if k not in {"severity", "threat", "title"}}
    body = json.dumps(rest, sort_keys=True, default=str)[:2000]
    return f"[llm-firewall] {head}: {body}" if head else f"[llm-firewall] {body}"


class _Retryable(Exception):
    """The receiver answered with a status worth retrying (5xx, 429)."""


class _Rejected(Exception):
    """The receiver refused the payload (4xx other than 429): retrying will not help."""


class WebhookNotifier:
    """POSTs notifications; `send` returns True when delivered and never raises."""

    def __init__(
        self,
        *,
        on_dead_letter: DeadLetterHook | None = None,
        on_circuit_change: Callable[[str, str, str], None] | None = None,
        targets: dict[str, str] | None = None,
        timeout_s: float = 5.0,
        attempts: int = 4,
        base_s: float = 0.5,
        max_s: float = 8.0,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.on_dead_letter = on_dead_letter
        self.on_circuit_change = on_circuit_change
        self.targets = dict(targets or {})  # name -> URL, so policies can say {notify: {target: soc}}
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.base_s = base_s
        self.max_s = max_s
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._session = session
        self._own_session = session is None
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self.breakers: dict[str, CircuitBreaker] = {}
        self.counts = {"sent": 0, "attempts": 0, "dead_letters": 0, "short_circuited": 0}

    def breaker(self, url: str) -> CircuitBreaker:
        name = mask_url(url)
        cb = self.breakers.get(name)
        if cb is None:
            cb = CircuitBreaker(
                f"webhook {name}",
                failure_threshold=self.failure_threshold,
                reset_timeout_s=self.reset_timeout_s,
                clock=self._clock,
            )
            cb.on_change = self.on_circuit_change
            self.breakers[name] = cb
        return cb

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"user-agent": "llm-firewall-notify"},
            )
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def send(self, target: str, payload: dict, *, fmt: str = "json") -> bool:
        """Deliver `payload` to `target` (a URL or a configured name). Never raises."""
        url = self.targets.get(target, target)
        shown = mask_url(url)
        safe = redact_value(payload)
        try:
            body = {"text": slack_text(safe)} if fmt == "slack" else safe
            if fmt not in ("json", "slack"):
                raise ValueError(f"unknown webhook format {fmt!r} (json or slack)")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook target {target!r} is neither a URL nor a configured name")
            data = json.dumps(body, default=str).encode()
            cb = self.breaker(url)

            async def attempt() -> None:
                self.counts["attempts"] += 1
                session = await self._client()
                async with session.post(url, data=data, headers={"content-type": "application/json"}) as resp:
                    await resp.read()
                    if resp.status >= 500 or resp.status == 429:
                        raise _Retryable(f"HTTP {resp.status}")
                    if resp.status >= 400:
                        raise _Rejected(f"HTTP {resp.status}")

            await retry_async(
                attempt,
                attempts=self.attempts,
                base_s=self.base_s,
                max_s=self.max_s,
                retry_on=(_Retryable, aiohttp.ClientError, asyncio.TimeoutError, OSError),
                sleep=self._sleep,
                breaker=cb,
                rng=self._rng,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure ends here: counted, logged, dead-lettered
            if isinstance(exc, CircuitOpenError):
                self.counts["short_circuited"] += 1
            error = redact_secrets(f"{type(exc).__name__}: {exc}")
            log.warning("webhook to %s failed: %s", shown, error)
            await self._dead_letter(shown, safe, error)
            return False
        self.counts["sent"] += 1
        log.info("webhook delivered to %s", shown)
        return True

    async def _dead_letter(self, shown: str, payload: dict, error: str) -> None:
        self.counts["dead_letters"] += 1
        if self.on_dead_letter is None:
            return
        try:
            result = self.on_dead_letter(shown, payload, error)
            if asyncio.iscoroutine(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dead-letter hook failed for %s", shown)

    def status(self) -> dict[str, object]:
        return {**self.counts, "circuits": {n: cb.state for n, cb in self.breakers.items()}}
