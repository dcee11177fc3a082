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


# [users]: the account changes counted, by the Change kind's value (a user account is never member-changed).
USER_CHANGES = ("create", "update", "move", "delete")
_UAC = "userAccountControl"
_ACCOUNTDISABLE = 0x2


def _disabled(value: object) -> int:
    """1 when a userAccountControl value (as a change carries it) has ACCOUNTDISABLE, else 0."""
    text = str(value) if isinstance(value, str | int) else ""
    return 1 if text.isdigit() and int(text) & _ACCOUNTDISABLE else 0


def _account_deltas(results: Iterable[_Applied]) -> dict[str, int]:
    """How the applied user account changes move the account gauges: a create adds a created account (a
    disabled one with ``create_disabled``), a delete removes one (only created accounts are ever deleted), and
    an update of userAccountControl disables or enables one."""
    delta = {"created": 0, "created_disabled": 0}
    for r in results:
        c = r.change
        if not r.ok or getattr(c, "target", "group") != "user":
            continue
        kind = c.kind.value
        if kind == "create":
            delta["created"] += 1
            delta["created_disabled"] += _disabled(c.attributes.get(_UAC))
        elif kind == "delete":
            delta["created"] -= 1
        elif kind == "update" and _UAC in c.attributes:
            delta["created_disabled"] += _disabled(c.attributes[_UAC]) - _disabled(c.previous.get(_UAC))
    return delta


def tally_users(users: dict[str, int], held: Iterable[Any], results: Iterable[_Applied]) -> None:
    """Count one apply's user account changes into ``users`` (the Health's ``users``, read by /metrics): the
    changes applied and refused by kind, the changes its plan ``held``, and the account gauges moved by what
    was applied (once a full plan has counted them: :func:`set_accounts`). Every apply of the service's
    passes comes here (cycles, provision on demand), as an ``on_apply`` observer."""
    results = list(results)
    for r in results:
        c = r.change
        if getattr(c, "target", "group") == "user":
            key = f"{c.kind.value}_{'success' if r.ok else 'error'}"
            users[key] = users.get(key, 0) + 1
    for kind in USER_CHANGES:
        users[f"held_{kind}"] = 0
    for c in held:
        if getattr(c, "target", "group") == "user":
            users[f"held_{c.kind.value}"] = users.get(f"held_{c.kind.value}", 0) + 1
    if "accounts_created" in users:
        for name, n in _account_deltas(results).items():
            users[f"accounts_{name}"] = max(users.get(f"accounts_{name}", 0) + n, 0)


def set_accounts(users: dict[str, int], counted: Mapping[str, int], results: Iterable[_Applied]) -> None:
    """The account gauges in ``users`` after a full pass: what its plan ``counted`` in AD (before the apply:
    :func:`writeback.core.desired.managed_accounts`) moved by what the apply did."""
    deltas = _account_deltas(results)
    for name, n in counted.items():
        users[f"accounts_{name}"] = max(n + deltas.get(name, 0), 0)


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
        yield from _user_metrics(getattr(h, "users", None) or {})
        for name, value in sorted(self.counts().items()):
            yield GaugeMetricFamily(f"writeback_{name}", name.replace("_", " "), value=value)


def _user_metrics(users: Mapping[str, int]) -> Iterator[Any]:
    """[users]: the accounts writeback manages by kind, the created ones disabled, the account changes applied
    by kind and result, and those held. Nothing before [users] wrote or counted anything."""
    if not users:
        return
    if "accounts_created" in users:
        accounts = GaugeMetricFamily(
            "writeback_user_accounts",
            "AD user accounts writeback manages, by kind (created: for cloud-only members; soa: SOA users' "
            "original accounts), as the last deep reconcile read them plus what was applied since",
            labels=["kind"],
        )
        for kind in ("created", "soa"):
            accounts.add_metric([kind], users.get(f"accounts_{kind}", 0))
        yield accounts
        yield GaugeMetricFamily(
            "writeback_user_accounts_disabled",
            "accounts writeback created that are disabled (their user left every in-scope group, or is disabled "
            "or soft-deleted in the cloud)",
            value=users.get("accounts_created_disabled", 0),
        )
    changes = CounterMetricFamily(
        "writeback_user_changes",
        "user account changes applied to AD, by kind and result",
        labels=["kind", "result"],
    )
    for kind in USER_CHANGES:
        for result in ("success", "error"):
            changes.add_metric([kind, result], users.get(f"{kind}_{result}", 0))
    yield changes
    held = GaugeMetricFamily(
        "writeback_held_user_changes",
        "user account changes the last apply's plan held (a safety threshold, or rights missing), by kind",
        labels=["kind"],
    )
    for kind in USER_CHANGES:
        held.add_metric([kind], users.get(f"held_{kind}", 0))
    yield held


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
