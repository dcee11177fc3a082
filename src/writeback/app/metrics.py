"""Prometheus metrics of the running service (prometheus-client), served by the console on ``/metrics``.

Counters that need every cycle (cycles by result, cycle duration) are fed by :meth:`ServiceMetrics.observe`,
which the service calls after each cycle; the rest is read from the service's Health at scrape time by a
custom collector, so the numbers on ``/metrics`` and in the health file can never disagree. A registry of its
own (not the process-global one): two services in one test process do not collide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from writeback.core.model import SkipReason
from writeback.core.safety import member_value_delta

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUSES = ("starting", "ok", "held", "degraded", "quarantined", "paused", "stopped")


class HealthLike(Protocol):
    status: str
    role: str
    consecutive_failures: int
    last_success: float | None
    last_cycle_seconds: float | None
    changes_applied: int
    changes_failed: int
    graph_requests: int
    ldap_operations: dict[str, int]
    held: list[dict[str, Any]]
    last_sync: float | None
    graph_stats: dict[str, int]
    managed_memberships: int | None
    skipped_members: dict[str, int]


class _Applied(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def change(self) -> Any: ...


# Skip reasons as metric labels: a bounded set (the texts of nested-group skips carry the child's error).
_SKIP_LABELS = {r.value: r.name.lower() for r in SkipReason}


def skip_reason_label(reason: str) -> str:
    """The ``reason`` label of writeback_skipped_members for a skipped member's reason text."""
    if reason in _SKIP_LABELS:
        return _SKIP_LABELS[reason]
    if "nesting cycle" in reason:
        return "nesting_cycle"
    if reason.startswith("nested group is not written"):
        return "nested_group_not_written"
    return "other"


def membership_delta(results: Iterable[_Applied]) -> int:
    """Member values the applied changes added minus those they removed (a delete's members are not known
    to the change, so a deleted group's values count until the next full read)."""
    return member_value_delta(r.change for r in results if r.ok)


def is_leader(health: HealthLike) -> bool:
    """Whether this instance is the active one, as its health says: role active and not stopped."""
    return health.role == "active" and health.status != "stopped"


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
            "writeback_leader",
            "1 while this instance is the active one (holds the leader lease; a SQLite state: while running)",
            value=is_leader(h),
        )
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
        ldap = CounterMetricFamily(
            "writeback_ldap_operations", "LDAP operations, by kind and result", labels=["kind", "result"]
        )
        ops = h.ldap_operations
        for kind, n in sorted(ops.items()):
            if kind == "values_written" or kind.endswith("_errors"):
                continue
            errors = ops.get(f"{kind}_errors", 0)
            ldap.add_metric([kind, "success"], max(n - errors, 0))
            ldap.add_metric([kind, "error"], errors)
        yield ldap
        yield CounterMetricFamily(
            "writeback_ldap_member_values_written",
            "member values written to AD",
            value=ops.get("values_written", 0),
        )
        g = h.graph_stats
        yield CounterMetricFamily(
            "writeback_graph_throttled",
            "Graph answers that asked to wait (429 throttled, 503 unavailable)",
            value=g.get("throttled", 0) + g.get("unavailable", 0),
        )
        yield CounterMetricFamily(
            "writeback_graph_throttle_wait_seconds",
            "seconds waited before retrying throttled Graph requests (Retry-After or backoff)",
            value=g.get("throttle_wait_ms", 0) / 1000,
        )
        if h.last_sync is not None:
            yield GaugeMetricFamily(
                "writeback_replica_lag_seconds",
                "seconds since the cloud replica last synced with Graph",
                value=max(time.time() - h.last_sync, 0.0),
            )
        if h.managed_memberships is not None:
            yield GaugeMetricFamily(
                "writeback_managed_memberships",
                "member values in the AD groups writeback manages",
                value=h.managed_memberships,
            )
        skipped = GaugeMetricFamily(
            "writeback_skipped_members",
            "cloud members not written to AD, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(h.skipped_members.items()):
            skipped.add_metric([reason], n)
        yield skipped
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
