"""Runs the real firewall as a subprocess (`python -m llm_firewall serve`) for end-to-end tests.

A subprocess, not an in-process app, so tests see exactly what a user sees, and so `kill -9`,
SIGTERM and SIGHUP can be tested for real.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Firewall:
    upstream: str | None = None
    data_dir: Path | None = None
    policy: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, timeout: float = 30.0) -> Firewall:
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_FIREWALL_"))}
        env.update(self.env)
        args = [sys.executable, "-m", "llm_firewall", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.upstream:
            args += ["--upstream", self.upstream]
        if self.data_dir:
            args += ["--data-dir", str(self.data_dir)]
        if self.policy:
            args += ["--policy", self.policy]
        args += self.extra_args
        log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
        self.log_path = log_dir / f"llm-firewall-test-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"firewall exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"firewall did not become ready:\n{self.logs()}")

    def logs(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode
