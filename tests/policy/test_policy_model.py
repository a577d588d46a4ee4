"""Loading policy files: presets, inheritance, ${ENV}, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_firewall.policy.model import PolicyError, default_policies_dir, list_presets, load_policy

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"


def write(dir_: Path, name: str, text: str) -> Path:
    path = dir_ / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def pdir(tmp_path: Path) -> Path:
    write(tmp_path, "base", """\
name: base
mode: enforce
identity: {user: header:x-user-id, trusted_proxies: [10.0.0.0/8]}
rate_limits:
  - {key: ip, limit: 100, window: 60s}
responses:
  - when: {fp_above: high}
    do: [log]
  - when: {min_severity: high, fp_below: low}
    do: [block_request]
approval_required: [permanent]
""")
    return tmp_path


def test_every_preset_loads_and_production_is_the_default():
    assert default_policies_dir() == REPO_POLICIES
    assert set(list_presets()) >= {"production", "development", "medical", "financial"}
    for name in ("production", "development", "medical", "financial"):
        policy = load_policy(name)
        assert policy.name == name
        assert len(policy.sha256) == 64
        assert policy.source_path.endswith(f"{name}.yaml")
        assert policy.description


def test_production_enforces_timed_sanctions_and_asks_approval_for_permanent_ones():
    p = load_policy("production")
    assert p.mode == "enforce" and p.block_severity == "high"
    assert "suspend_user" not in p.approval_required
    assert {"block_ip_range", "permanent"} <= p.approval_required
    (ladder,) = p.escalations
    assert (ladder.count, ladder.strikes, ladder.within_s, ladder.do) == (frozenset({"prompt_injection"}), 3, 600, "suspend_user")
    assert (ladder.for_s, ladder.factor, ladder.max_s) == (900, 2, 86400)
    assert p.fp_thresholds.block_below == 0.3 and p.fp_thresholds.monitor_above == 0.7
    assert p.fail_modes == {"store": "closed", "rate_limit": "open"}


def test_medical_needs_approval_to_suspend_a_user():
    assert "suspend_user" in load_policy("medical").approval_required


def test_child_inherits_mappings_and_splices_base_list_items(pdir: Path):
    write(pdir, "child", """\
name: child
extends: base
mode: monitor
identity: {session: header:x-conversation}
responses:
  - when: {threat: privacy_violation}
    do: [redact]
  - $base
""")
    p = load_policy("child", pdir)
    assert p.mode == "monitor"
    assert p.identity.user_header == "x-user-id"  # from base
    assert p.identity.session_header == "x-conversation"  # child wins
    assert p.identity.trusted_proxies == ("10.0.0.0/8",)
    assert [r.do[0].kind for r in p.responses] == ["redact", "log", "block_request"]
    assert p.rate_limits[0].limit == 100 and p.rate_limits[0].window_s == 60


def test_rate_limits_count_requests_or_kib_of_body(tmp_path: Path):
    write(tmp_path, "x", "name: x\nrate_limits:\n  - {key: ip, limit: 600, window: 60s}\n"
                         "  - {key: client, limit: 16384, window: 1m, unit: kib}\n")
    p = load_policy("x", tmp_path)
    assert [(r.key, r.unit) for r in p.request_limits] == [("ip", "requests")]
    assert [(r.key, r.limit, r.window_s, r.unit) for r in p.size_limits] == [("client", 16384, 60.0, "kib")]


def test_a_child_list_without_marker_replaces_the_parent_list(pdir: Path):
    write(pdir, "child", "name: child\nextends: base\nresponses:\n  - {when: {}, do: [log]}\n")
    assert [r.do[0].kind for r in load_policy("child", pdir).responses] == ["log"]


def test_load_by_path(pdir: Path):
    path = write(pdir, "mine", "name: mine\nextends: base.yaml\n")
    assert load_policy(str(path)).name == "mine"


def test_unknown_action_names_file_line_policy_and_field(pdir: Path):
    write(pdir, "broken", """\
name: broken
extends: base
responses:
  - when: {threat: prompt_injection}
    do: [block_request]
  - when: {threat: data_exfiltration}
    do:
      - block_request
      - blok_ip
""")
    with pytest.raises(PolicyError) as err:
        load_policy("broken", pdir)
    msg = str(err.value)
    assert msg.startswith(f"{pdir / 'broken.yaml'}:9: policy 'broken': field 'responses[1].do[1]': unknown action 'blok_ip'")
    assert "did you mean 'block_ip'" in msg


@pytest.mark.parametrize(
    "body, line, field, words",
    [
        ("name: x\nmod: monitor\n", 2, "mod", "unknown key 'mod'"),
        ("name: x\nmode: enforced\n", 2, "mode", "unknown value 'enforced'"),
        ("name: x\nrate_limits:\n  - {key: ip, limit: 5, window: soon}\n", 3, "rate_limits[0].window", "duration"),
        ("name: x\nrate_limits:\n  - {key: ip, limit: 5}\n", 3, "rate_limits[0].window", "required"),
        ("name: x\nrate_limits:\n  - {key: ip, limit: 5, window: 60s, unit: bytes}\n", 3, "rate_limits[0].unit", "kib"),
        ("name: x\nallowlist:\n  ips: [10.0.0.0/8, not-an-ip]\n", 3, "allowlist.ips[1]", "not an IP network"),
        ("name: x\nresponses:\n  - when: {threat: prompt_injektion}\n    do: [log]\n", 3, "responses[0].when.threat[0]", "prompt_injection"),
        ("name: x\nresponses:\n  - when: {fp_below: 1.5}\n    do: [log]\n", 3, "responses[0].when.fp_below", "out of range"),
        ("name: x\nresponses:\n  - do: [{block_ip: {duration: forever}}]\n", 3, "responses[0].do[0].block_ip.duration", "permanent"),
        ("name: x\nescalations:\n  - {count: [prompt_injection], strikes: 3, within: 10m, do: ban}\n", 3, "escalations[0].do", "unknown escalation action"),
        ("name: x\napproval_required: [suspend_usr]\n", 2, "approval_required[0]", "suspend_user"),
        ("name: x\ncanary: 'yes'\n", 2, "canary", "true or false"),
        ("name: x\nscan_logs:\n  - {path: /var/log/nginx/access.log, format: apache}\n", 3, "scan_logs[0].format", "apache"),
        ("name: x\nscan_logs:\n  - {format: json}\n", 3, "scan_logs[0].path", "required"),
    ],
)
def test_validation_errors_are_located(tmp_path: Path, body: str, line: int, field: str, words: str):
    write(tmp_path, "x", body)
    with pytest.raises(PolicyError) as err:
        load_policy("x", tmp_path)
    msg = str(err.value)
    assert f"x.yaml:{line}: policy 'x': field '{field}':" in msg, msg
    assert words in msg


def test_error_in_a_parent_points_at_the_parent_file(pdir: Path):
    write(pdir, "base", "name: base\nresponses:\n  - when: {}\n    do: [nope]\n")
    write(pdir, "child", "name: child\nextends: base\n")
    with pytest.raises(PolicyError, match=r"base\.yaml:4: policy 'child': field 'responses\[0\]\.do\[0\]'"):
        load_policy("child", pdir)


def test_yaml_syntax_error_and_duplicate_keys_carry_a_line(tmp_path: Path):
    write(tmp_path, "bad", "name: bad\nresponses: [\n")
    with pytest.raises(PolicyError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_policy("bad", tmp_path)
    write(tmp_path, "dup", "name: dup\nmode: enforce\nmode: monitor\n")
    with pytest.raises(PolicyError, match=r"dup\.yaml:3: duplicate key 'mode'"):
        load_policy("dup", tmp_path)


def test_extends_loop_and_missing_parent_are_reported(tmp_path: Path):
    write(tmp_path, "a", "name: a\nextends: b\n")
    write(tmp_path, "b", "name: b\nextends: a\n")
    with pytest.raises(PolicyError, match="loops"):
        load_policy("a", tmp_path)
    write(tmp_path, "c", "name: c\nextends: nothere\n")
    with pytest.raises(PolicyError, match=r"c\.yaml:2: field 'extends': .*not found"):
        load_policy("c", tmp_path)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(PolicyError, match="production"):
        load_policy("prodution")


def test_env_substitution_for_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path, "x", "name: x\nnotify_targets: {soc: '${SOC_HOOK}'}\nresponses:\n  - {when: {}, do: [{notify: {target: soc}}]}\n")
    monkeypatch.setenv("SOC_HOOK", "https://hooks.example/abc")
    first = load_policy("x", tmp_path)
    assert first.notify_targets["soc"] == "https://hooks.example/abc"
    monkeypatch.setenv("SOC_HOOK", "https://hooks.example/other")
    assert load_policy("x", tmp_path).sha256 == first.sha256  # digest is of the text, not the secret
    monkeypatch.delenv("SOC_HOOK")
    with pytest.raises(PolicyError, match=r"x\.yaml:2: policy 'x': field 'notify_targets.soc': environment variable SOC_HOOK is not set"):
        load_policy("x", tmp_path)


def test_digest_changes_with_content(tmp_path: Path):
    write(tmp_path, "x", "name: x\nmode: enforce\n")
    before = load_policy("x", tmp_path).sha256
    write(tmp_path, "x", "name: x\nmode: monitor\n")
    assert load_policy("x", tmp_path).sha256 != before


def test_named_fp_thresholds_and_action_defaults(tmp_path: Path):
    write(tmp_path, "x", """\
name: x
responses:
  - when: {fp_below: very_low}
    do: [{block_ip: {duration: permanent}}, rate_limit, suspend_user]
""")
    rule = load_policy("x", tmp_path).responses[0]
    assert rule.when.fp_below == 0.1
    block_ip, rate, suspend = rule.do
    assert block_ip.params["duration_s"] is None and block_ip.permanent
    assert dict(rate.params) == {"limit": 5, "window_s": 120.0, "key": "client", "duration_s": 3600.0}
    assert suspend.params["duration_s"] == 900.0


def test_identity_names_one_forwarding_header_and_a_gateways_user_header(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text("name: gw\nidentity: {forwarded_header: Forwarded, "
                                      "trusted_user: 'header:X-Authenticated-User'}\n")
    p = load_policy("gw", tmp_path)
    assert (p.identity.forwarded_header, p.identity.trusted_user_header) == ("forwarded", "x-authenticated-user")
    assert load_policy("production").identity.forwarded_header is None  # the deployment's setting
    (tmp_path / "bad.yaml").write_text("name: bad\nidentity: {forwarded_header: X-Client-IP}\n")
    with pytest.raises(PolicyError, match="identity.forwarded_header"):
        load_policy("bad", tmp_path)
    (tmp_path / "bad2.yaml").write_text("name: bad2\nidentity: {trusted_user: x-authenticated-user}\n")
    with pytest.raises(PolicyError, match="identity.trusted_user"):
        load_policy("bad2", tmp_path)


def test_trusted_system_prompts_are_sha256_digests_and_none_by_default(tmp_path: Path) -> None:
    assert load_policy("production").trusted_system_prompts == frozenset()
    digest = "AB" * 32
    write(tmp_path, "t", f"name: t\ntrusted_system_prompts:\n  - {digest}\n")
    assert load_policy("t", tmp_path).trusted_system_prompts == frozenset({digest.lower()})
    write(tmp_path, "bad", "name: bad\ntrusted_system_prompts:\n  - abc\n  - You are a helpful assistant.\n")
    with pytest.raises(PolicyError, match=r"bad\.yaml:3: policy 'bad': field 'trusted_system_prompts\[0\]': "
                                          r"'abc': expected a SHA-256 digest"):
        load_policy("bad", tmp_path)
    write(tmp_path, "bad2", "name: bad2\ntrusted_system_prompts: {a: 1}\n")
    with pytest.raises(PolicyError, match=r"bad2\.yaml:2: .*field 'trusted_system_prompts.*': expected a"):
        load_policy("bad2", tmp_path)
