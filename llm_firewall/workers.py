"""`serve --workers N`: N processes on one port, one shared state.

Why processes: one asyncio process uses one core. Each worker binds the same address with
SO_REUSEPORT, so the kernel spreads connections over them with no process in the middle. They
share what must be shared through Redis (sanctions, rate limits, strikes, approvals, alerts: the
same code that serves replicas behind a load balancer) and the audit trail through one SQLite
file (sequence numbers are taken under its write lock, so the trail stays one gap-free
sequence). Without a Redis URL, a private `redis-server` is started for the workers alone: a
unix socket in a directory only this user can open, no TCP port, its append-only file in the data
directory so sanctions outlive a restart.

The supervisor only starts, watches and stops: a worker that dies after start-up is started
again; one that fails while starting (a bad policy, a port in use) stops them all with its exit
code, since every other worker would fail the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from llm_firewall.config import Settings

STARTUP_S = 10.0  # a worker that exits sooner failed to start
STOP_GRACE_S = 35.0  # the server gives requests in flight 30 s


class WorkersError(RuntimeError):
    """A setting that cannot work with several workers; the message says what to change."""


def worker_argv(argv: list[str]) -> list[str]:
    """The command line of one worker: the supervisor's own, with `--workers` set to 1."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return [*out, "--workers", "1"]


class PrivateRedis:
    """A redis-server reachable only through a unix socket in a private directory."""

    def __init__(self, executable: str, data_dir: Path) -> None:
        self._dir = tempfile.mkdtemp(prefix="llm-firewall-")  # mode 0700; short enough for sun_path
        self.socket_path = os.path.join(self._dir, "redis.sock")
        store = data_dir / "redis"
        store.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [executable, "--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm", "700",
             "--dir", str(store), "--appendonly", "yes", "--save", "", "--logfile", str(store / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise WorkersError(f"redis-server exited at start-up (code {self._proc.returncode}); "
                                   "see redis/redis.log in the data directory")
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(1.0)
                    sock.connect(self.socket_path)
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise WorkersError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


def check(settings: Settings) -> str | None:
    """Why these settings cannot run several workers (None when they can): refused before
    anything starts, with what to change."""
    if settings.port == 0:
        return "--workers needs a fixed --port (each worker binds the same one)"
    if settings.data_dir is None:
        return "--workers needs --data-dir (the workers share its audit trail)"
    if settings.redis_url is None and shutil.which("redis-server") is None:
        return ("--workers needs Redis to share sanctions and limits: install redis-server (apt-get install "
                "redis-server) for a private one, or set LLM_FIREWALL_REDIS_URL")
    return None


def run(settings: Settings, argv: list[str]) -> int:
    """Start `settings.workers` workers and Redis if needed; return when they are stopped."""
    assert settings.data_dir is not None
    redis: PrivateRedis | None = None
    env = dict(os.environ)
    if settings.redis_url is None:
        redis = PrivateRedis(shutil.which("redis-server") or "redis-server", settings.data_dir)
        try:
            redis.wait_ready()
        except WorkersError:
            redis.stop()
            raise
        env["LLM_FIREWALL_REDIS_URL"] = redis.url
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    name = settings.replica or socket.gethostname()
    command = [sys.executable, "-m", "llm_firewall", *worker_argv(argv)]

    def start(index: int) -> tuple[subprocess.Popen[bytes], float]:
        worker_env = {**env, "LLM_FIREWALL_REUSE_PORT": "1", "LLM_FIREWALL_REPLICA": f"{name}-w{index}",
                      "LLM_FIREWALL_JOURNAL_DIR": str(settings.data_dir / "journal" / f"w{index}")}
        return subprocess.Popen(command, env=worker_env), time.monotonic()

    workers = [start(i) for i in range(1, settings.workers + 1)]
    code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, (proc, started) in enumerate(workers):
                if proc.poll() is None:
                    continue
                if time.monotonic() - started < STARTUP_S:
                    code = proc.returncode or 1
                    stopping = True
                    break
                print(f"llm-firewall: worker {i + 1} exited (code {proc.returncode}); starting it again",
                      file=sys.stderr, flush=True)
                workers[i] = start(i + 1)
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc, _ in workers:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if redis is not None:
            redis.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
