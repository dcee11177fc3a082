"""Prometheus metrics of the running service (prometheus-client), served by the console on ``/metrics``.

Counters that need every cycle (cycles by result, cycle duration) are fed by :meth:`ServiceMetrics.observe`,
which the service calls after each cycle; the rest is read from the service's Health at scrape time by a
custom collector, so the numbers on ``/metrics`` and in the health file can never disagree. A registry of its
own (not the process-global one): two services in one test process do not collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUSES = ("starting", "ok", "held", "degraded", "quarantined", "stopped")


class HealthLike(Protocol):
    status: str
    consecutive_failures: int
    last_success: float | None
    last_cycle_seconds: float | None
    changes_applied: int
    changes_failed: int
    graph_requests: int
    ldap_operations: dict[str, int]
    held: list[dict[str, Any]]


class _HealthCollector(Collector):
    def __init__(self, health: Callable[[], HealthLike], counts: Callable[[], Mapping[str, int]]) -> None:
        self.health, self.counts = health, counts

    def collect(self) -> Iterator[Any]:
        h = self.health()
        status = GaugeMetricFamily(
            "writeback_status", "1 for the service's current status", labels=["status"]
        )
        for s in STATUSES:
            status.add_metric([s], 1.0 if h.status == s else 0.0)
        yield status
        yield GaugeMetricFamily(
            "writeback_quarantined",
            "1 while quarantined (cycles keep failing)",
            value=h.status == "quarantined",
        )
        yield GaugeMetricFamily(
            "writeback_consecutive_failed_cycles", "failed cycles in a row", value=h.consecutive_failures
        )
        if h.last_success is not None:
            yield GaugeMetricFamily(
                "writeback_last_success_timestamp_seconds",
                "Unix time of the last good cycle",
                value=h.last_success,
            )
        changes = CounterMetricFamily("writeback_changes", "AD changes applied, by result", labels=["result"])
        changes.add_metric(["success"], h.changes_applied)
        changes.add_metric(["error"], h.changes_failed)
        yield changes
        yield CounterMetricFamily(
            "writeback_graph_requests", "Microsoft Graph requests", value=h.graph_requests
        )
        ldap = CounterMetricFamily("writeback_ldap_operations", "LDAP operations, by kind", labels=["kind"])
        for kind, n in sorted(h.ldap_operations.items()):
            ldap.add_metric([kind], n)
        yield ldap
        held = GaugeMetricFamily(
            "writeback_held_changes", "changes held by a safety threshold", labels=["kind"]
        )
        for hold in h.held:
            held.add_metric([str(hold.get("kind", ""))], float(hold.get("count", 0)))
        yield held
        for name, value in sorted(self.counts().items()):
            yield GaugeMetricFamily(f"writeback_{name}", name.replace("_", " "), value=value)


class ServiceMetrics:
    """The service's metrics registry. ``counts`` returns extra gauges (e.g. managed_groups) at scrape time."""

    def __init__(
        self, health: Callable[[], HealthLike], counts: Callable[[], Mapping[str, int]] = dict
    ) -> None:
        self.registry = CollectorRegistry()
        self.cycles = Counter(
            "writeback_cycles", "service cycles, by result", ["result"], registry=self.registry
        )
        self.duration = Histogram(
            "writeback_cycle_duration_seconds",
            "how long one cycle took",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
            registry=self.registry,
        )
        self.registry.register(_HealthCollector(health, counts))

    def observe(self, health: HealthLike, ok: bool) -> None:
        self.cycles.labels("success" if ok else "failure").inc()
        if health.last_cycle_seconds is not None:
            self.duration.observe(health.last_cycle_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
