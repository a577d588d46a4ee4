"""`llm-firewall schema rules|policy`: the JSON Schema editors use agrees with the loaders.

The shipped schemas/*.schema.json are what the command writes now; every shipped rule and
policy file names its schema and is valid under it; files the loaders refuse are refused by the
schema too (the loaders are the oracle), and the errors still carry file, line and field.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from llm_firewall.detect.rules import RuleError, default_rules_dir, load_rules
from llm_firewall.policy.model import PolicyError, default_policies_dir, load_policy

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
SHIPPED = {"rules": sorted(default_rules_dir().glob("*.yaml")) + [ROOT / "examples" / "local-rules" / "local.yaml"],
           "policy": sorted(default_policies_dir().glob("*.yaml"))}


def command(kind: str) -> str:
    done = subprocess.run([sys.executable, "-m", "llm_firewall", "schema", kind], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout


def as_editor_reads(path: Path) -> Any:
    """The document as a YAML editor sees it: dates are plain strings (JSON has no dates)."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("kind", ["rules", "policy"])
def test_shipped_schema_files_are_what_the_command_writes_now(kind: str) -> None:
    assert (SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8") == command(kind), \
        f"regenerate: llm-firewall schema {kind} > schemas/{kind}.schema.json"


def test_the_command_refuses_an_unknown_kind() -> None:
    done = subprocess.run([sys.executable, "-m", "llm_firewall", "schema", "rule"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "rules|policy" in done.stderr


@pytest.mark.parametrize("kind", ["rules", "policy"])
def test_every_shipped_file_names_its_schema_and_is_valid_under_it(kind: str) -> None:
    check = validator(kind)
    assert len(SHIPPED[kind]) >= 5
    for path in SHIPPED[kind]:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert target == (SCHEMAS / f"{kind}.schema.json").resolve(), path
        # the installed package's copy (bundled/) resolves the same way: tests/test_packaging.py
        errors = [f"{list(e.path)}: {e.message}" for e in check.iter_errors(as_editor_reads(path))]
        assert errors == [], (path, errors[:3])


def test_every_shipped_rule_is_tagged_and_dated() -> None:
    rules = load_rules(default_rules_dir()).rules
    assert len(rules) >= 50
    for rule in rules:
        assert rule.date is not None and rule.tags, rule.id
        assert any(t.startswith("owasp-llm:") for t in rule.tags), rule.id
    by_id = {r.id: r for r in rules}
    assert "atlas:AML.T0051.000" in by_id["PI-001"].tags and "owasp-llm:LLM07" in by_id["DE-002"].tags


GOOD_RULE = """\
rules:
  - id: T-001
    title: Test rule
    threat: prompt_injection
    severity: high
    category: instruction_override
    references: [https://atlas.mitre.org/techniques/AML.T0051]
    tags: [owasp-llm:LLM01, atlas:AML.T0051.000, cwe:CWE-77]
    author: the security team
    date: 2026-12-07
    match: {any: [{regex: 'forget\\s+the\\s+rules'}]}
    falsepositives: [none]
    tests: {match: ["forget the rules"], no_match: ["remember the rules"]}
"""


def test_rules_carry_sigma_style_metadata(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(GOOD_RULE, encoding="utf-8")
    (rule,) = load_rules(tmp_path).rules
    assert rule.tags == ("owasp-llm:LLM01", "atlas:AML.T0051.000", "cwe:CWE-77")
    assert (rule.author, str(rule.date)) == ("the security team", "2026-12-07")
    assert rule.references == ("https://atlas.mitre.org/techniques/AML.T0051",)


@pytest.mark.parametrize("change, field, line", [
    (("owasp-llm:LLM01, atlas", "owasp-llm:LLM11, atlas"), "tags[0]", 8),
    (("atlas:AML.T0051.000", "AML.T0051"), "tags[1]", 8),
    (("date: 2026-12-07", "date: last tuesday"), "date", 10),
    (("author: the security team", "author: [a, b]"), "author", 9),
    (("    title: Test rule\n", "    title: Test rule\n    titel: again\n"), "titel", 4),
    (("severity: high", "severity: hihg"), "severity", 5),
    (("{regex: 'forget\\s+the\\s+rules'}", "{phrases: [forget the rules, '  ']}"), "match.any[0].phrases[1]", 11),
])
def test_bad_rule_metadata_is_refused_by_the_loader_and_by_the_schema(tmp_path: Path, change: tuple[str, str],
                                                                      field: str, line: int) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(GOOD_RULE.replace(*change), encoding="utf-8")
    with pytest.raises(RuleError) as err:
        load_rules(tmp_path)
    assert (err.value.rule_id, err.value.field, err.value.line) == ("T-001", field, line), str(err.value)
    assert list(validator("rules").iter_errors(as_editor_reads(path)))


def test_a_date_that_is_no_date_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(GOOD_RULE.replace("date: 2026-12-07", "date: 2026-13-01"), encoding="utf-8")
    with pytest.raises(RuleError) as err:
        load_rules(tmp_path)
    assert err.value.line == 10 and "2026-13-01" in err.value.message


@pytest.mark.parametrize("body, field", [
    ("name: x\nmod: monitor\n", "mod"),
    ("name: x\nmode: enforced\n", "mode"),
    ("name: x\nresponses:\n  - when: {threat: prompt_injektion}\n    do: [log]\n", "responses[0].when.threat[0]"),
    ("name: x\nresponses:\n  - do: [blok_ip]\n", "responses[0].do[0]"),
    ("name: x\nresponses:\n  - do: [{block_ip: {duration: forever}}]\n", "responses[0].do[0].block_ip.duration"),
    ("name: x\nrate_limits:\n  - {key: ip, limit: 0, window: 60s}\n", "rate_limits[0].limit"),
    ("name: x\nfp_thresholds: {low: 1.5}\n", "fp_thresholds.low"),
    ("name: x\ncanary: 'yes'\n", "canary"),
])
def test_a_policy_the_loader_refuses_is_refused_by_the_schema(tmp_path: Path, body: str, field: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(PolicyError, match=rf"x\.yaml:\d+: policy 'x': field '{re.escape(field)}'"):
        load_policy(str(path))
    assert list(validator("policy").iter_errors(as_editor_reads(path)))


def test_a_policy_using_every_form_is_valid_for_both(tmp_path: Path) -> None:
    path = tmp_path / "full.yaml"
    path.write_text("""\
name: full
extends: production
identity: {forwarded_header: X-Real-IP, trusted_user: 'header:X-Auth-User', trusted_proxies: 10.0.0.0/8}
allowlist: {ips: [192.0.2.0/24], users: ['ops-*']}
rule_overrides: {PV-002: {enabled: false}, PI-001: {severity: critical, status: experimental}}
rate_limits:
  - {key: client, limit: 16384, window: 1m, unit: kib}
  - $base
responses:
  - when: {threat: privacy_violation, fp_below: very_low, role: tool}
    do: redact
  - when: {min_severity: high, fp_above: 0.2}
    do: [block_request, {rate_limit: {limit: 3, window: 30s, key: ip, for: 2h}}, {block_ip: {duration: permanent}},
         {block_ip_range: {prefix_v4: 16}}, {notify: {target: soc}}, {flag_session: {note: look}}, {log: }]
  - $base
escalations:
  - {count: prompt_injection, strikes: 2, within: 5m, do: block_ip, for: 1h, max: permanent}
approval_required: permanent
notify_targets: {soc: 'https://hooks.example/x'}
token_budgets: {user: 100000}
scan_logs:
  - {path: /var/log/nginx/access.log, format: combined, ban: {block_ip: {duration: 1h}}}
passthrough_endpoints: ["POST moderations", "GET files/{id}"]
""", encoding="utf-8")
    policy = load_policy(str(path))
    assert [a.kind for a in policy.responses[1].do] == ["block_request", "rate_limit", "block_ip", "block_ip_range",
                                                        "notify", "flag_session", "log"]
    assert policy.responses[1].do[2].permanent and policy.escalations[0].max_s is None
    assert policy.identity.forwarded_header == "x-real-ip" and policy.rate_limits[0].unit == "kib"
    assert list(validator("policy").iter_errors(as_editor_reads(path))) == []


def test_scan_with_a_broken_policy_says_where_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nextends: production\nresponses:\n  - when: {}\n    do: [blok_ip]\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "llm_firewall", "scan", "--policy", str(path), "hello"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "mine.yaml:5: policy 'mine': field 'responses[0].do[0]': unknown action 'blok_ip'" in done.stderr
