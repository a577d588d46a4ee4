"""What loading the shipped policies and rules costs (a reload does this on a live proxy).

Usage: python benchmarks/load_files.py [--runs 50]
Loads every shipped policy (its `extends` chain, ${ENV}, validation) and the whole shipped rules
directory (validation, RE2 compilation, each rule's own examples), in-process; prints
milliseconds per load, median over the runs, and the lines of the validating code.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from llm_firewall.detect.rules import default_rules_dir, load_rules
from llm_firewall.policy.model import default_policies_dir, list_presets, load_policy


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    runs = parser.parse_args().runs
    presets = list_presets(default_policies_dir())
    print(f"policy (one preset, mean of {len(presets)}): "
          f"{median_ms(lambda: [load_policy(p) for p in presets], runs) / len(presets):.2f} ms")
    print(f"rules ({len(load_rules(default_rules_dir()))} rules): "
          f"{median_ms(lambda: load_rules(default_rules_dir()), max(3, runs // 10)):.1f} ms")
    root = Path(__file__).resolve().parents[1] / "llm_firewall"
    for name in ("policy/model.py", "policy/spec.py", "policy/types.py", "detect/rule_spec.py", "detect/rules.py",
                 "schema/located.py", "schema/typed.py"):
        path = root / name
        if path.exists():
            print(f"  {name}: {len(path.read_text(encoding='utf-8').splitlines())} lines")


if __name__ == "__main__":
    main()
