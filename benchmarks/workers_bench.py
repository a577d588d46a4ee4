"""Throughput and CPU per request of `serve --workers N`, for each N, taking turns over rounds.

    python benchmarks/workers_bench.py [--workers 1,2] [--rounds 3] [--duration 5] [--concurrency 64]
                                       [--texts FILE.jsonl]

Every request is the bench's real traffic: the payload's system prompt and a user text of a
labelled JSONL (--texts, the shipped sample by default) ending in a reference no other request
carries, so nothing is served from the verdict cache; each from a client identity of its own. The
mock upstream, the load generator and every worker share the machine's cores unpinned: on a
2-core machine the load generator and the mock take most of a core, so two workers cannot show
twice the throughput of one there; what it can show is the CPU each request costs with 1 and 2
workers (the private Redis's share included, since the workers share state through it) and
that throughput does not fall. Figures are the medians of the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench import (
    PAYLOADS,
    Load,
    Processes,
    measure,
    start_firewall,
    start_mock,
)
from benchmarks.traffic import DEFAULT_TEXTS, read_texts, real_bodies, write_bodies


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--policy", default="production")
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="labelled JSONL of user texts")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="llm-firewall-workers-bench-") as tmp:
        body = write_bodies(Path(tmp) / "real.jsonl",
                            real_bodies((PAYLOADS / "request.json").read_bytes(), read_texts(args.texts)))
        procs = Processes(workdir=Path(tmp), pin=False)
        load = Load(use_wrk=True, pin=False, workdir=Path(tmp))
        try:
            mock_port, _ = start_mock(procs, "mock")
            servers = {n: start_firewall(procs, f"fw{n}", mock_port, args.policy, inspect=True,
                                         entry=(sys.executable, "-m", "llm_firewall"),
                                         **({"LLM_FIREWALL_WORKERS": str(n)} if n > 1 else {}))
                       for n in counts}
            results: dict[int, list[tuple[float, float, float, float]]] = {n: [] for n in counts}
            for _ in range(args.rounds):
                for n in counts:
                    port, pid = servers[n]
                    row = measure(load, f"http://127.0.0.1:{port}", pid, args.concurrency, args.duration, body)
                    results[n].append((row["rps"], row["cpu_us_per_req"] or 0.0, row["p50_ms"],
                                       100 * (row["refused"] + row["errors"]) / max(1, row["requests"])))
        finally:
            procs.stop_all()
    print(f"real traffic (a new text every request), c={args.concurrency}, {args.duration:.0f} s a run, median of {args.rounds} rounds "  # noqa: E501
          f"(taking turns); every process unpinned on {len(__import__('os').sched_getaffinity(0))} cores")
    print(f"{'workers':>8} {'req/s':>9} {'CPU us/req':>11} {'p50 ms':>8} {'refused or failed %':>20}")
    for n in counts:
        rps, cpu, p50, failed = (statistics.median(x[i] for x in results[n]) for i in range(4))
        print(f"{n:>8} {rps:>9.0f} {cpu:>11.0f} {p50:>8.2f} {failed:>20.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
