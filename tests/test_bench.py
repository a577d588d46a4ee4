"""`llm-firewall bench` in a tiny mode: it runs end to end, prints the expected rows, stops its servers.

Speed itself is never asserted here: the benchmark prints figures, a person reads them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import pytest


def bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_firewall", "bench", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_quick_run_prints_a_row_per_target() -> None:
    out = bench("--quick", "--concurrency", "1", "--duration", "1")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    by_target = {}
    for cells in rows:
        for label in ("direct", "baseline proxy", "firewall"):
            words = label.split()
            if cells[:len(words)] == words and len(cells) == len(words) + 9:
                by_target[label] = cells[len(words):]
    assert set(by_target) == {"direct", "baseline proxy", "firewall"}, out.stdout
    for label, cells in by_target.items():
        assert cells[0] == "1", f"{label} row is not at concurrency 1: {cells}"
        assert float(cells[1]) > 0, f"{label} served no requests"
    for label in ("direct", "baseline proxy"):  # the firewall's answers depend on its rules: a refusal is warned
        assert by_target[label][6] == "0", f"{label} had errors: {out.stdout}"
    assert "throughput share of baseline" not in out.stdout  # only measured at c=16 and c=64
    assert "added p50 over direct at c=1" in out.stdout


@pytest.mark.parametrize("generator", ["builtin"] + (["wrk"] if shutil.which("wrk") else []))
def test_json_output_and_every_server_stopped(generator: str) -> None:
    out = bench("--quick", "--concurrency", "2", "--duration", "1", "--targets", "direct,baseline",
                "--load-generator", generator, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    rows = result["throughput"]
    assert [(r["target"], r["concurrency"]) for r in rows] == [("direct", 2), ("baseline", 2)]
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in rows)
    assert rows[1]["added_p50_ms"] is not None and rows[0]["added_p50_ms"] is None
    assert not any(listening(p) for p in result["environment"]["ports"].values())


def test_bad_concurrency_is_a_clear_usage_error() -> None:
    out = bench("--concurrency", "many")
    assert out.returncode == 2
    assert "--concurrency takes comma-separated integers" in out.stderr
