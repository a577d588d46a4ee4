"""The policy in force, reloadable without a restart and never replaced by a broken file.

A reload (SIGHUP, a changed file, or the admin endpoint) parses the new policy completely before
swapping it in; on any error the last good policy stays in force and the error is kept for the
status endpoint, the metrics and the audit trail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from llm_firewall.policy.model import Policy, PolicyError, default_policies_dir, load_policy

log = logging.getLogger(__name__)


class LivePolicy:
    def __init__(self, spec: str, policies_dir: Path | None = None,
                 validate: Callable[[Policy], None] | None = None) -> None:
        self.spec = spec
        self.policies_dir = policies_dir or default_policies_dir()
        self._validate = validate
        self.current: Policy = self._load()
        self.error: str | None = None
        self.loaded_at = time.time()
        self.on_change: list[Callable[[Policy | None, str | None], Awaitable[None] | None]] = []
        self._mtimes = self._snapshot()

    def _load(self) -> Policy:
        policy = load_policy(self.spec, self.policies_dir)
        if self._validate is not None:
            self._validate(policy)
        return policy

    def _files(self) -> list[Path]:
        spec_path = Path(self.spec)
        files = list(Path(self.policies_dir).glob("*.yaml")) if Path(self.policies_dir).is_dir() else []
        if spec_path.suffix in (".yaml", ".yml") and spec_path.exists():
            files.append(spec_path)
        return files

    def _snapshot(self) -> dict[Path, float]:
        out = {}
        for path in self._files():
            try:
                out[path] = path.stat().st_mtime
            except OSError:
                continue
        return out

    async def reload(self, reason: str = "admin") -> tuple[bool, str | None]:
        """Try the files on disk; keep the last good policy when they are broken."""
        try:
            policy = self._load()
        except (PolicyError, ValueError, OSError) as exc:
            self.error = str(exc)
            log.error("policy reload (%s) refused, keeping %r: %s", reason, self.current.name, exc)
            await self._notify(None, self.error)
            return False, self.error
        self.current, self.error, self.loaded_at = policy, None, time.time()
        log.info("policy %r reloaded (%s)", policy.name, reason)
        await self._notify(policy, None)
        return True, None

    async def _notify(self, policy: Policy | None, error: str | None) -> None:
        for hook in self.on_change:
            result = hook(policy, error)
            if asyncio.iscoroutine(result):
                await result

    async def watch(self, interval_s: float = 1.0) -> None:
        """Poll the policy files' modification times; reload when any changes."""
        while True:
            await asyncio.sleep(interval_s)
            snap = self._snapshot()
            if snap != self._mtimes:
                self._mtimes = snap
                await self.reload("file change")
