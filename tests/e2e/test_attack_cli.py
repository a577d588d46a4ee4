"""`llm-firewall attack --target URL` against a real firewall subprocess, as an operator runs it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from llm_firewall.tools import scenario_catalog
from tests.support.firewall import ROOT, Firewall, free_port


def attack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_firewall", "attack", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def fw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    # Loopback is a trusted proxy here, so each scenario's synthetic X-Forwarded-For is its address.
    server = Firewall(data_dir=tmp_path_factory.mktemp("attack"),
                      env={"LLM_FIREWALL_TRUSTED_PROXIES": "127.0.0.1/32"}).start()
    yield server
    server.stop()


def rows(stdout: str) -> dict[tuple[str, int], str]:
    """(scenario, step) -> the table line."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0] in scenario_catalog.SCENARIOS and parts[1].isdigit():
            out[(parts[0], int(parts[1]))] = line
    return out


def test_attack_prints_every_scenario_outcome(fw: Firewall) -> None:
    result = attack("--target", fw.url)
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    for name, scenario in scenario_catalog.SCENARIOS.items():
        for i, step in enumerate(scenario.steps, start=1):
            line = table[(name, i)]
            assert scenario_catalog.excerpt(step.message, 52) in line
            if step.attack:
                assert (" blocked " in line and "400 content_policy_violation" in line) or \
                       (" refused " in line and (" 403 " in line or " 429 " in line)), line
        assert f"{name}: {sum(s.attack for s in scenario.steps)}/{sum(s.attack for s in scenario.steps)} " \
               f"attack messages stopped" in result.stdout
    # The harmless opener of every scenario is answered.
    for name in scenario_catalog.SCENARIOS:
        assert " allowed " in table[(name, 1)] and " 200" in table[(name, 1)]
    # The critical exfiltration attempt ends that client's session for good.
    last = table[("data_exfiltration", len(scenario_catalog.get("data_exfiltration").steps))]
    assert " refused " in last and ("ip_blocked" in last or "session_terminated" in last)


def test_attack_one_scenario(fw: Firewall) -> None:
    result = attack("--target", fw.url, "--scenario", "malicious_input")
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert {name for name, _ in table} == {"malicious_input"}
    assert "malicious_input: 3/3 attack messages stopped" in result.stdout


def test_attack_reports_an_attack_that_gets_through(fw: Firewall) -> None:
    import urllib.request

    req = urllib.request.Request(fw.url + "/api/soc/toggle", data=b'{"enabled": false}', method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).close()
    try:
        result = attack("--target", fw.url, "--scenario", "system_manipulation")
    finally:
        req = urllib.request.Request(fw.url + "/api/soc/toggle", data=b'{"enabled": true}', method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()
    assert result.returncode == 1
    assert "system_manipulation: 0/3 attack messages stopped" in result.stdout


def test_attack_unreachable_target_is_a_clear_error() -> None:
    result = attack("--target", f"http://127.0.0.1:{free_port()}", "--scenario", "prompt_injection",
                    "--timeout", "5")
    assert result.returncode == 2
    assert "cannot reach" in result.stderr


def test_attack_unknown_scenario_is_a_usage_error() -> None:
    result = attack("--target", "http://127.0.0.1:1", "--scenario", "nope")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_attack_never_sanctions_this_host_unasked(tmp_path) -> None:
    """Without trusting this host as a proxy the firewall would hold 127.0.0.1 itself answerable
    for the scenarios: nothing is sent (no terminal to ask on), and the host stays unsanctioned."""
    import json
    import urllib.request

    server = Firewall(data_dir=tmp_path / "d").start()
    try:
        result = attack("--target", server.url)
        assert result.returncode == 2
        assert "does not trust this host" in result.stderr and "LLM_FIREWALL_TRUSTED_PROXIES" in result.stderr
        assert rows(result.stdout) == {}
        blocks = json.loads(urllib.request.urlopen(server.url + "/api/blocks", timeout=10).read())
        assert blocks["blocks"] == []
        whoami = json.loads(urllib.request.urlopen(server.url + "/api/whoami", timeout=10).read())
        assert whoami["ip"] == "127.0.0.1" and whoami["peer_is_trusted_proxy"] is False
    finally:
        server.stop()
