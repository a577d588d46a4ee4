"""How long small requests wait while the firewall inspects one large, costly request.

Usage: python benchmarks/stall_bench.py [--mb 3.8] [--small 40] [--rounds 3] [--no-inline]
Starts a firewall on 127.0.0.1 (production policy, its embedded demo model as the upstream:
the bench's mock is a fixed copy of the reference and takes bodies up to 1 MiB only), then per
round sends one large body of leetspeak prose (the costliest kind of benign text to inspect:
every word is folded) and, while it is in flight, small chat requests one after another (each
from its own client). Prints the large request's time and the small ones' median and worst
latency, first with the firewall as configured (large texts inspected on its worker thread),
then, unless --no-inline, with every text inspected on the event loop
(LLM_FIREWALL_THREAD_INSPECT_CHARS above any body), where the worst wait is the large
request's whole inspection. Stops what it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.*

from benchmarks.bench import Processes, start_firewall

WORDS = "the order shipping refund please explain how this works and why it failed yesterday".split()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-stall-0123456789abcdef"}


def leetspeak(chars: int, seed: int) -> str:
    text = " ".join(random.Random(seed).choices(WORDS, k=chars // 4 + 2))[:chars]
    return text.replace("e", "3").replace("a", "4").replace("o", "0")


async def post(session: aiohttp.ClientSession, url: str, body: bytes, client: int) -> tuple[int, float]:
    started = time.perf_counter()
    async with session.post(url, data=body, headers={**HEADERS, "X-Forwarded-For": f"198.51.100.{client % 250 + 1}",
                                                     "X-User-ID": f"stall-{client}"}) as resp:
        await resp.read()
        return resp.status, time.perf_counter() - started


async def one_round(url: str, large: bytes, small: int, seed: int) -> tuple[tuple[int, float], list[float]]:
    tiny = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello there"}]}).encode()
    async with aiohttp.ClientSession() as session:
        await post(session, url, tiny, seed * 1000)  # a warm connection pool and server
        waits: list[float] = []

        async def smalls() -> None:
            for n in range(small):
                waits.append((await post(session, url, tiny, seed * 1000 + 1 + n))[1])
                await asyncio.sleep(0.02)

        big, _ = await asyncio.gather(post(session, url, large, seed * 1000 + 999), smalls())
        return big, waits


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=3.8, help="size of the large body's text in MB (under 4 MiB)")
    ap.add_argument("--small", type=int, default=40, help="small requests sent while it is in flight")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-inline", action="store_true", help="skip the comparison with inline inspection")
    args = ap.parse_args(argv)
    if not 0.1 <= args.mb <= 4.0:
        ap.error("--mb must be between 0.1 and 4.0 (the firewall refuses bodies over 4 MiB)")
    workdir = Path(tempfile.mkdtemp(prefix="llm-firewall-stall-"))
    procs = Processes(workdir, pin=False)
    modes = [("thread", {})] + ([] if args.no_inline else [("inline", {"LLM_FIREWALL_THREAD_INSPECT_CHARS": "1000000000"})])  # noqa: E501
    print(f"{'inspection':>10}  {'round':>5}  {'large body':>10}  {'status':>6}  {'large s':>8}  "
          f"{'small median ms':>15}  {'small worst ms':>14}")
    try:
        for mode, env in modes:
            port, _ = start_firewall(procs, mode, None, "production", **env)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            for r in range(args.rounds):
                large = json.dumps({"model": "m", "messages": [
                    {"role": "user", "content": leetspeak(int(args.mb * 1_000_000), r)}]}).encode()
                (status, seconds), waits = asyncio.run(one_round(url, large, args.small, r))
                print(f"{mode:>10}  {r + 1:>5}  {len(large) / 1e6:>8.2f}MB  {status:>6}  {seconds:>8.2f}  "
                      f"{statistics.median(waits) * 1e3:>15.1f}  {max(waits) * 1e3:>14.1f}", flush=True)
            procs.stop(mode)
    except (RuntimeError, OSError) as exc:
        print(f"stall_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
