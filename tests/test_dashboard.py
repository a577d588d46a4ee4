"""The Grafana dashboard in examples/ is built from metrics the firewall really exports."""

from __future__ import annotations

import json
import re
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support.firewall import ROOT, Firewall


def test_every_metric_the_dashboard_queries_is_exported(firewall: Firewall) -> None:
    dashboard = json.loads((ROOT / "examples" / "grafana-dashboard.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\b(?:llm_firewall|process)_[a-z_]+\b", target["expr"])}
    exposition = urllib.request.urlopen(firewall.url + "/metrics", timeout=10).read().decode()
    exported = set()
    for family in text_string_to_metric_families(exposition):
        exported |= {family.name + suffix for suffix in ("", "_total", "_bucket", "_count", "_sum", "_info")}
    assert len(queried) >= 15
    assert queried <= exported, sorted(queried - exported)
