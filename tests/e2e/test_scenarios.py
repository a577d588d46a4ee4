"""`POST /api/test/scenario/{name}` against a real firewall subprocess (production preset, demo model),
and the specification's five seed scenarios sent with the openai SDK through the proxy to a local upstream."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from llm_firewall.tools import scenario_catalog
from tests.conftest import make_client
from tests.support.firewall import Firewall

NAMES = list(scenario_catalog.SCENARIOS)


def call(fw: Firewall, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(fw.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def fw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    server = Firewall(data_dir=tmp_path_factory.mktemp("scenarios")).start()
    yield server
    server.stop()


@pytest.mark.parametrize("name", NAMES)
def test_scenario_blocks_the_attacks_and_raises_alerts(fw: Firewall, name: str) -> None:
    status, run = call(fw, "POST", f"/api/test/scenario/{name}", {})
    assert status == 200, run
    scenario = scenario_catalog.get(name)
    assert run["scenario"] == name
    assert run["total"] == len(scenario.steps) == len(run["steps"])
    assert [s["message"] for s in run["steps"]] == [s.message for s in scenario.steps]

    first = run["steps"][0]
    assert not scenario.steps[0].attack and first["outcome"] == "allowed", first
    attacks = [s for s in run["steps"] if s["attack"]]
    assert attacks and all(s["outcome"] in ("blocked", "refused") for s in attacks), attacks
    assert run["blocked"] >= len(attacks)

    blocked = [s for s in run["steps"] if s["outcome"] == "blocked"]
    assert blocked and all(s["status"] == 400 and s["code"] == "content_policy_violation" for s in blocked)
    assert all(s["alert_id"] and s["severity"] in ("high", "critical") for s in blocked)
    assert any(s["threat"] == name for s in blocked), [s["threat"] for s in blocked]
    assert all(s["fp_probability"] is not None and s["fp_probability"] < 0.3 for s in blocked)
    assert all("block_request" in s["actions"] for s in blocked)

    status, listed = call(fw, "GET", "/api/security/alerts?limit=200")
    assert status == 200
    by_id = {a["alert_id"]: a for a in listed["alerts"]}
    for step in blocked:
        alert = by_id[step["alert_id"]]
        assert alert["user"] == run["client"]["user"]
        assert alert["ip"] == run["client"]["ip"]
        assert alert["ip"].startswith("198.51.100.")


def test_sanctions_fall_on_the_synthetic_client_not_the_operator(fw: Firewall) -> None:
    status, run = call(fw, "POST", "/api/test/scenario/data_exfiltration", {})
    assert status == 200
    # The credential request is critical: the session ends and the synthetic address is blocked,
    # so the closing benign message of that client is refused.
    last = run["steps"][-1]
    assert last["outcome"] == "refused" and last["status"] == 403
    assert last["code"] in ("ip_blocked", "session_terminated")
    status, blocks = call(fw, "GET", "/api/blocks")
    keys = {(b["kind"], b["key"]) for b in blocks["blocks"]}
    assert ("ip", run["client"]["ip"]) in keys
    assert not any(kind == "ip" and key.startswith("127.") for kind, key in keys)

    # The operator, on loopback, can still chat.
    status, answer = call(fw, "POST", "/v1/chat/completions",
                          {"model": "demo-mini", "messages": [{"role": "user", "content": "Hello!"}]})
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"]


def test_each_run_is_a_fresh_client_and_results_are_listed(fw: Firewall) -> None:
    _, one = call(fw, "POST", "/api/test/scenario/prompt_injection", {})
    _, two = call(fw, "POST", "/api/test/scenario/prompt_injection", {})
    assert one["client"]["user"] != two["client"]["user"]
    assert one["client"]["session"] != two["client"]["session"]
    assert two["steps"][0]["outcome"] == "allowed"  # the earlier run's sanctions do not carry over

    status, listed = call(fw, "GET", "/api/test/results")
    assert status == 200
    run_ids = [r["run_id"] for r in listed["results"]]
    assert run_ids[:2] == [two["run_id"], one["run_id"]]  # newest first
    assert {s["name"] for s in listed["scenarios"]} == set(NAMES)


def test_unknown_scenario_names_the_choices(fw: Firewall) -> None:
    status, body = call(fw, "POST", "/api/test/scenario/nonsense", {})
    assert status == 404
    assert "prompt_injection" in body["error"]["message"]


def test_scenarios_refused_to_a_foreign_origin(fw: Firewall) -> None:
    status, body = call(fw, "POST", "/api/test/scenario/prompt_injection", {},
                        headers={"Origin": "http://evil.example"})
    assert status == 403
    assert body["error"]["code"] == "cross_origin"


def test_scenarios_need_the_admin_token_when_one_is_set(tmp_path: Path) -> None:
    server = Firewall(data_dir=tmp_path, env={"LLM_FIREWALL_ADMIN_TOKEN": "s3cret-admin-token"}).start()
    try:
        status, _ = call(server, "POST", "/api/test/scenario/malicious_input", {})
        assert status == 401
        status, _ = call(server, "GET", "/api/test/results")
        assert status == 401
        status, run = call(server, "POST", "/api/test/scenario/malicious_input", {},
                           headers={"Authorization": "Bearer s3cret-admin-token"})
        assert status == 200 and run["blocked"] >= 3
    finally:
        server.stop()


# --- the product specification's five seed scenarios, through the real openai SDK ---------------

def _alert_for(fw: Firewall, user: str) -> dict[str, Any]:
    status, listed = call(fw, "GET", "/api/security/alerts?limit=200")
    assert status == 200
    mine = [a for a in listed["alerts"] if (a["user"] or "").split("@", 1)[0] == user]  # ids are scoped
    assert len(mine) == 1, mine
    return mine[0]




def _run_seed(firewall: Firewall, who: Any, case: scenario_catalog.SeedCase) -> tuple[Any, dict[str, Any]]:
    client = make_client(firewall, who)
    try:
        answer = client.chat.completions.create(
            model="demo-mini", messages=[{"role": "user", "content": case.message}])
        outcome: Any = answer
    except openai.BadRequestError as exc:
        outcome = exc
    return outcome, _alert_for(firewall, who.user)


@pytest.mark.parametrize("case", list(scenario_catalog.SEED), ids=lambda c: c.name)
def test_seed_scenario_outcome_threat_and_remediation(firewall: Firewall, who: Any,
                                                      case: scenario_catalog.SeedCase) -> None:
    outcome, alert = _run_seed(firewall, who, case)
    if case.blocked:
        assert isinstance(outcome, openai.BadRequestError), outcome
        assert outcome.status_code == 400 and outcome.code == "content_policy_violation"
        actions = [a["action"] for a in alert["remediation_taken"]]
        assert "block_request" in actions, actions
        assert alert["fp_probability"] < 0.3
    else:
        assert not isinstance(outcome, Exception), outcome
        assert outcome.choices[0].message.content
    assert case.threat in alert["threats"], alert["threats"]
    rule_findings = [f for f in alert["findings"] if not f["rule_id"].startswith("ML-")]
    if case.severity is not None:
        assert {f["severity"] for f in rule_findings if f["threat"] == case.threat} == {case.severity}
    if case.fp_at_least is not None:
        assert alert["remediation_taken"] == []
        assert alert["severity"] == case.severity
        assert alert["fp_probability"] >= case.fp_at_least, alert["fp_probability"]


@pytest.mark.parametrize("case", [c for c in scenario_catalog.SEED if c.severity is not None], ids=lambda c: c.name)
def test_seed_scenario_alert_severity(firewall: Firewall, who: Any,
                                      case: scenario_catalog.SeedCase) -> None:
    _, alert = _run_seed(firewall, who, case)
    assert alert["severity"] == case.severity, alert["rule_ids"]
