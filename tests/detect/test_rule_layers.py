"""Local rules directories layered over the shipped rules: add, replace by id, disable by id,
through the real firewall (LLM_FIREWALL_RULES_DIRS) and `scan`; the shipped files stay as they are."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import openai
import orjson
import pytest

from llm_firewall.detect.rules import RuleError, default_rules_dir, load_rule_layers
from tests.conftest import Who, make_client, start_firewall
from tests.support.firewall import ROOT
from tests.support.upstream import TestUpstream

EXAMPLE = ROOT / "examples" / "local-rules"
PHONE = "Call me back on +1 415 555 0132 tomorrow."


def test_a_local_directory_adds_replaces_and_disables_rules(tmp_path: Path) -> None:
    shipped = load_rule_layers([default_rules_dir()])
    local = tmp_path / "local"
    local.mkdir()
    (local / "a.yaml").write_text((EXAMPLE / "local.yaml").read_text())
    replaced = next(r for r in shipped.rules if r.id == "PV-001")
    (local / "b.yaml").write_text("""rules:
  - id: PV-001
    title: E-mail address (local wording)
    description: Replaced locally.
    threat: privacy_violation
    category: pii
    severity: low
    status: stable
    applies_to: {direction: request}
    match: {any: [{regex: '\\b[a-z]+@corp\\.example\\b'}]}
    falsepositives: [Addresses the company publishes]
    tests: {match: ["write to ann@corp.example"], no_match: ["write to ann@other.example"]}
""")
    layered = load_rule_layers([default_rules_dir(), local])
    ids = [r.id for r in layered.rules]
    assert "LOCAL-001" in ids and "PV-002" not in ids
    assert ids.index("PV-001") == [r.id for r in shipped.rules].index("PV-001")  # replaced in place
    assert next(r for r in layered.rules if r.id == "PV-001").title == "E-mail address (local wording)"
    assert replaced.title != "E-mail address (local wording)"


def test_disabling_an_unknown_id_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "off.yaml").write_text("disable:\n  - PV-999\n")
    with pytest.raises(RuleError) as err:
        load_rule_layers([default_rules_dir(), tmp_path])
    assert "off.yaml" in str(err.value) and "PV-999" in str(err.value) and ":2" in str(err.value)


def test_firewall_serves_with_local_rules_dirs(upstream: TestUpstream, tmp_path: Path) -> None:
    before = {p.name: p.read_bytes() for p in default_rules_dir().glob("*.yaml")}
    local = tmp_path / "local-rules"
    shutil.copytree(EXAMPLE, local)
    fw = start_firewall(upstream, tmp_path / "d", policy="financial", env={"LLM_FIREWALL_RULES_DIRS": str(local)})
    try:
        client = make_client(fw, Who())
        with pytest.raises(openai.BadRequestError):  # the added rule refuses
            client.chat.completions.create(model="m", messages=[
                {"role": "user", "content": "Summarise the Project Bluefin roadmap for the board."}])
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": PHONE}])
        assert PHONE in upstream.requests[-1].body.decode()  # the disabled rule no longer masks the number
    finally:
        fw.stop()
    assert {p.name: p.read_bytes() for p in default_rules_dir().glob("*.yaml")} == before


def test_scan_takes_local_rules_dirs() -> None:
    done = subprocess.run([sys.executable, "-m", "llm_firewall", "scan", "--local-rules-dir", str(EXAMPLE),
                           "Summarise the Project Bluefin roadmap."], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    result = orjson.loads(done.stdout.splitlines()[0])
    assert result["blocked"] and result["threats"][0]["rule_id"] == "LOCAL-001"
