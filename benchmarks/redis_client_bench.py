"""The Redis call every request makes, through the firewall's own script client and through redis-py.

    python benchmarks/redis_client_bench.py [--calls 20000] [--concurrency 16] [--rounds 3]

Starts a private redis-server on 127.0.0.1 (it must be installed), builds a `RedisStore` as the
firewall does, and runs its one-call request check (`check_quick`: the sanction lookup plus every
rate limit of the production policy) for distinct identities, `--concurrency` at a time. The same
store then runs with the lean client switched off, so the calls go through redis-py, which uses
the hiredis reply parser when the `hiredis` package is installed (the report says which). Clients
take turns over the rounds; each figure is the median. CPU is this process's own time per call,
so the Redis server's work is not counted: what a replica pays.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llm_firewall.domain import Identity  # noqa: E402
from llm_firewall.enforce.actions import _limit_hits  # noqa: E402
from llm_firewall.enforce.memory_store import MemoryStore  # noqa: E402
from llm_firewall.enforce.redis_store import RedisStore  # noqa: E402
from llm_firewall.policy.model import load_policy  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server)")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


async def _run(store: RedisStore, limits: tuple, calls: int, concurrency: int, offset: int) -> tuple[float, float]:
    """(calls per second, CPU µs per call) for `calls` checks of distinct identities."""
    queue = iter(range(calls))

    async def worker() -> None:
        for i in queue:
            ident = Identity(ip=f"10.{(offset + i) >> 16 & 255}.{(offset + i) >> 8 & 255}.{(offset + i) & 255}",
                             user=f"u{offset + i}", session=f"s{offset + i}")
            found = await store.check_quick(ident, time.time(), _limit_hits(limits, ident))
            assert found is not None and found.charged, "the check did not run on Redis"

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return calls / wall, cpu / calls * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    policy = load_policy("production", ROOT / "policies")
    limits = policy.request_limits
    try:
        import hiredis  # noqa: F401
        parser_name = "hiredis"
    except ImportError:
        parser_name = "pure-Python parser (pip install hiredis to compare with it)"
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = _start_redis(workdir)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            stores = {}
            for name in ("own client", f"redis-py, {parser_name}"):
                store = RedisStore(url, fallback=MemoryStore(None))
                await store.start(fail_modes=lambda: policy.fail_modes)
                if name != "own client":
                    if store._fast is not None:
                        store._fast.close()
                    store._fast = None  # the hot-path scripts go through redis-py
                stores[name] = store
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in stores}
            offset = 0
            for _ in range(args.rounds):
                for name, store in stores.items():
                    await _run(store, limits, 500, args.concurrency, offset + 10**7)  # warm
                    results[name].append(await _run(store, limits, args.calls, args.concurrency, offset))
                    offset += args.calls
            print(f"check_quick, {len(limits)} rate limits, c={args.concurrency}, {args.calls} calls, "
                  f"median of {args.rounds} rounds")
            print(f"{'client':<52} {'calls/s':>9} {'CPU µs/call':>12}")
            for name, rows in results.items():
                print(f"{name:<52} {statistics.median(r[0] for r in rows):>9,.0f} "
                      f"{statistics.median(r[1] for r in rows):>12.1f}")
            for store in stores.values():
                await store.close()
        finally:
            proc.kill()
            proc.wait(5)


if __name__ == "__main__":
    asyncio.run(main())
