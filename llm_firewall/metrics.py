"""Every Prometheus metric the firewall exports, in one registry per app.

One registry per app (not the global default) so that several apps in one process, as in the
tests, never collide. Labels are bounded: routes, outcomes, threats, severities and rule ids
come from fixed vocabularies or from the loaded rule set, never from request data.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                    10, 30, 60, 120)
_INSPECT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5)


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount

    def mirror(self, total: float) -> None:
        """Follow a running count kept elsewhere (a queue's drops); never goes back down."""
        self.value = max(self.value, float(total))


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _LoopMetric:
    """A counter or histogram updated only from the event loop, rendered at scrape time.

    Why: prometheus-client guards every update with a lock (two for a histogram) for threads
    the firewall's request path never uses; the metrics touched on every request cost ~5 µs a
    request that way. These keep plain numbers and build the same exposition on collect.
    """

    def __init__(self, name: str, doc: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        registry.register(self)

    def _new(self) -> Any:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError

    def labels(self, *values: str) -> Any:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new()
        return child


class LoopCounter(_LoopMetric):
    def _new(self) -> _CounterChild:
        return _CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for key, child in list(self._children.items()):
            family.add_metric(key, child.value)
        yield family


class LoopHistogram(_LoopMetric):
    def __init__(self, name: str, doc: str, labelnames: Sequence[str], registry: CollectorRegistry,
                 buckets: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        super().__init__(name, doc, labelnames, registry)

    def _new(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for key, child in list(self._children.items()):
            running, buckets = 0, []
            for bound, count in zip((*self.bounds, float("inf")), list(child.counts), strict=True):
                running += count
                buckets.append((floatToGoString(bound), running))
            family.add_metric(key, buckets, child.sum)
        yield family


class Metrics:
    """The firewall's metrics, named by Prometheus conventions (counters end in `_total`)."""

    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry = CollectorRegistry(auto_describe=True)
        # What every Prometheus exporter shows: CPU, memory, file descriptors, GC and Python version.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        p = "llm_firewall_"
        # Updated on every request: loop-local (see _LoopMetric). The rest change rarely.
        self.requests = LoopCounter(p + "requests", "Requests by route and outcome", ["route", "outcome"], r)
        self.request_seconds = LoopHistogram(p + "request_duration_seconds", "Time from request to last byte",
                                             ["route"], r, _LATENCY_BUCKETS)
        self.inspect_seconds = LoopHistogram(p + "inspection_duration_seconds", "Time spent inspecting texts",
                                             ["direction"], r, _INSPECT_BUCKETS)
        self.ttfb_seconds = LoopHistogram(p + "upstream_first_byte_seconds", "Upstream time to first byte",
                                          [], r, _LATENCY_BUCKETS)
        self.alerts = Counter(p + "alerts_total", "Alerts by threat and severity", ["threat", "severity"], registry=r)
        self.false_positives = Counter(p + "false_positive_alerts_total",
                                       "Alerts scored as likely false positives (monitor band)", registry=r)
        self.actions = Counter(p + "actions_total", "Enforcement actions by kind and result",
                               ["action", "result"], registry=r)
        self.rule_matches = Counter(p + "rule_matches_total", "Rule matches by rule id", ["rule_id"], registry=r)
        self.sanctions = Gauge(p + "sanctions_active", "Sanctions in force by kind", ["kind"], registry=r)
        self.tokens = LoopCounter(p + "tokens", "Tokens by model and kind (prompt/completion)", ["model", "kind"], r)
        self.cost = LoopCounter(p + "cost_usd", "Estimated cost in US dollars by model", ["model"], r)
        self.queue_depth = Gauge(p + "queue_depth", "SOC queue depth", ["queue"], registry=r)
        self.queue_drops = LoopCounter(p + "queue_drops", "SOC queue events dropped (queue full)", ["queue"], r)
        self.circuit_state = Gauge(p + "circuit_state", "Circuit state (0 closed, 1 half-open, 2 open)",
                                   ["target"], registry=r)
        self.rules_loaded = Gauge(p + "rules_loaded", "Rules loaded", registry=r)
        self.policy_info = Info(p + "policy", "The policy in force (name and sha256)", registry=r)
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
