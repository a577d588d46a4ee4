"""Every Prometheus metric the firewall exports, in one registry per app.

One registry per app (not the global default) so that several apps in one process, as in the
tests, never collide. Labels are bounded: routes, outcomes, threats, severities and rule ids
come from fixed vocabularies or from the loaded rule set, never from request data.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                    10, 30, 60, 120)
_INSPECT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5)


class Metrics:
    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry = CollectorRegistry(auto_describe=True)
        p = "llm_firewall_"
        self.requests = Counter(p + "requests_total", "Requests by route and outcome", ["route", "outcome"], registry=r)
        self.request_seconds = Histogram(p + "request_duration_seconds", "Time from request to last byte",
                                         ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.inspect_seconds = Histogram(p + "inspection_duration_seconds", "Time spent inspecting texts",
                                         ["direction"], buckets=_INSPECT_BUCKETS, registry=r)
        self.ttfb_seconds = Histogram(p + "upstream_first_byte_seconds", "Upstream time to first byte",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.alerts = Counter(p + "alerts_total", "Alerts by threat and severity", ["threat", "severity"], registry=r)
        self.false_positives = Counter(p + "false_positive_alerts_total",
                                       "Alerts scored as likely false positives (monitor band)", registry=r)
        self.actions = Counter(p + "actions_total", "Enforcement actions by kind and result",
                               ["action", "result"], registry=r)
        self.rule_matches = Counter(p + "rule_matches_total", "Rule matches by rule id", ["rule_id"], registry=r)
        self.sanctions = Gauge(p + "sanctions_active", "Sanctions in force by kind", ["kind"], registry=r)
        self.tokens = Counter(p + "tokens_total", "Tokens by model and kind (prompt/completion)",
                              ["model", "kind"], registry=r)
        self.cost = Counter(p + "cost_usd_total", "Estimated cost in US dollars by model", ["model"], registry=r)
        self.queue_depth = Gauge(p + "queue_depth", "SOC queue depth", ["queue"], registry=r)
        self.queue_drops = Gauge(p + "queue_drops", "SOC queue drops so far", ["queue"], registry=r)
        self.circuit_state = Gauge(p + "circuit_state", "Circuit state (0 closed, 1 half-open, 2 open)",
                                   ["target"], registry=r)
        self.rules_loaded = Gauge(p + "rules_loaded", "Rules loaded", registry=r)
        self.policy_info = Gauge(p + "policy_loaded", "1 for the policy in force", ["name", "sha256"], registry=r)
        self.policy_reload_errors = Counter(p + "policy_reload_errors_total",
                                            "Policy reloads refused because the new file was broken", registry=r)
        self.soc_enabled = Gauge(p + "soc_enabled", "1 when inspection is on", registry=r)
        self.store_errors = Counter(p + "store_errors_total", "Shared-state calls that failed or timed out",
                                    ["op"], registry=r)


    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: labels() costs microseconds on every request.

        Only for metrics that are never cleared; the label values are bounded vocabularies."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}
