"""The wheel carries what an installed firewall needs outside a checkout: the shipped rules,
policies and schemas (copied in at build time), the tools, and not the benchmarks."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_an_installed_wheel_loads_its_bundled_rules_and_policies(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("llm_firewall-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("rules", "policies", "schemas"):
        shipped = {p.name for p in (ROOT / name).iterdir() if p.suffix in (".yaml", ".json")}
        assert {Path(n).name for n in names if n.startswith(f"llm_firewall/bundled/{name}/")} == shipped
    assert "llm_firewall/tools/cli.py" in names
    assert not any(n.startswith(("benchmarks/", "llm_firewall/bench")) for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("from llm_firewall.policy.model import load_policy; from llm_firewall.inspector import Inspector; "
             "p = load_policy('production'); i = Inspector.load(None); "
             "print(p.name, len(i.engine.rules) > 40, p.source_path)")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out[:2] == ["production", "True"]
    assert "/bundled/policies/" in out[2]  # the wheel's copy, not a checkout's
    for shipped in (site / "llm_firewall" / "bundled").glob("*/*.yaml"):  # editors find the schema there too
        named = shipped.read_text(encoding="utf-8").splitlines()[0].split("$schema=", 1)[1]
        assert (shipped.parent / named).resolve().is_file(), shipped
