"""Throughput and CPU per request of this checkout's firewall against another build's, taking turns.

    python benchmarks/compare_builds.py --other /path/to/other-checkout/.venv/bin/python
        [--rounds 3] [--duration 5] [--concurrency 16]

Both firewalls run in front of one mock upstream, the load alternating between them round after
round (medians printed), with two kinds of traffic: the same body every request, and a new user
text every request from a client identity of its own (benchmarks/traffic.py). What a change costs
a normal client is the ratio of the two builds' figures in one run; absolute figures move with the
machine. Every process is unpinned.
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
from benchmarks.traffic import DEFAULT_TEXTS, fixed_bodies, read_texts, real_bodies, write_bodies


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", required=True, help="the other build's Python (its checkout's .venv/bin/python)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--policy", default="production")
    args = parser.parse_args(argv)
    builds = {"this": (sys.executable, "-m", "llm_firewall"), "other": (args.other, "-m", "llm_firewall")}
    with tempfile.TemporaryDirectory(prefix="llm-firewall-compare-") as tmp:
        payload = (PAYLOADS / "request.json").read_bytes()
        bodies = {"fixed": write_bodies(Path(tmp) / "fixed.jsonl", fixed_bodies(payload)),
                  "real": write_bodies(Path(tmp) / "real.jsonl",
                                       real_bodies(payload, read_texts(DEFAULT_TEXTS)))}
        procs = Processes(workdir=Path(tmp), pin=False)
        load = Load(use_wrk=True, pin=False, workdir=Path(tmp))
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        try:
            mock_port, _ = start_mock(procs, "mock")
            servers = {name: start_firewall(procs, name, mock_port, args.policy, entry=entry)
                       for name, entry in builds.items()}
            for _ in range(args.rounds):
                for traffic, body in bodies.items():
                    for name, (port, pid) in servers.items():
                        row = measure(load, f"http://127.0.0.1:{port}", pid, args.concurrency, args.duration, body)
                        results.setdefault((traffic, name), []).append((row["rps"], row["cpu_us_per_req"] or 0.0))
        finally:
            procs.stop_all()
    print(f"c={args.concurrency}, {args.duration:.0f} s a run, median of {args.rounds} rounds taking turns; "
          f"this = {sys.executable}, other = {args.other}")
    print(f"{'traffic':>8} {'build':>6} {'req/s':>9} {'CPU us/req':>11}")
    for traffic in bodies:
        med = {name: [statistics.median(x[i] for x in results[traffic, name]) for i in range(2)] for name in builds}
        for name in builds:
            print(f"{traffic:>8} {name:>6} {med[name][0]:>9.0f} {med[name][1]:>11.0f}")
        rps, cpu = (med["this"][i] / med["other"][i] for i in range(2))
        print(f"{traffic:>8} {'ratio':>6} {rps:>9.2f} {cpu:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
