"""`writeback run`: the long-running service.

Every ``service.poll_interval`` seconds it asks Graph for changes (two delta requests when idle), plans only the
groups those changes touch, and applies them; every ``service.reconcile_interval`` seconds (and after a Graph
full resync) it reconciles every group against AD to catch drift. Failures back off exponentially; when every
cycle keeps failing the service says it is quarantined and retries at the longest interval, like Cloud Sync's
quarantine but in minutes, not hours. SIGTERM/SIGINT stop it between two LDAP changes.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from writeback.config import Settings
from writeback.engine import Engine
from writeback.errors import WritebackError
from writeback.planning import Plan, merge_plans

log = logging.getLogger("writeback.service")
QUARANTINE_AFTER = 5  # consecutive failed cycles


@dataclass
class Health:
    status: str = "starting"  # starting, ok, degraded, quarantined, stopped
    started: float = field(default_factory=time.time)
    last_cycle: float | None = None
    last_success: float | None = None
    last_full_reconcile: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    cycles: int = 0
    changes_applied: int = 0
    pid: int = field(default_factory=os.getpid)


@dataclass(frozen=True)
class CycleOutcome:
    full: bool
    planned: int
    applied: int
    failed: int
    groups: int


class Service:
    def __init__(
        self, settings: Settings, engine: Engine, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings, self.engine, self.clock = settings, engine, clock
        self.stop_event = threading.Event()
        self.health = Health()
        self._next_full = 0.0

    def request_stop(self, *_: Any) -> None:
        log.info("stop requested; finishing the current change")
        self.stop_event.set()

    def cycle(self) -> CycleOutcome:
        """One poll: sync the replica, plan the affected groups (or all, when a full reconcile is due), apply."""
        report = self.engine.sync()
        now = self.clock()
        full = report.full_resync or now >= self._next_full
        only: set[str] | None = None
        if not full:
            only = set(report.changed_groups)
            members_of = self.engine.store.groups_with_members
            if report.changed_users:
                only |= members_of(report.changed_users)
            if report.changed_groups:  # parents of a changed (renamed, deleted, re-scoped) nested group
                only |= members_of(report.changed_groups)
        # On-prem dynamic groups: an incremental read of changed AD users each poll (full reads come with
        # the full reconcile, inside engine.plan()).
        dynamic = None if full else self.engine.plan_dynamic_if_changed()
        if not full and not only and dynamic is None:
            return CycleOutcome(False, 0, 0, 0, 0)
        plan = self.engine.plan(only=only) if full or only else Plan()
        if dynamic is not None:
            plan = merge_plans(plan, dynamic)
        result = self.engine.apply(plan, should_stop=self.stop_event.is_set)
        if full:
            self._next_full = now + self.settings.service.reconcile_interval
            self.health.last_full_reconcile = time.time()
        applied = sum(1 for r in result.results if r.ok)
        outcome = CycleOutcome(
            full, len(plan.changes), applied, len(result.failed), len(only) if only else -1
        )
        if plan.changes or result.failed:
            log.info("cycle applied", extra={"event": "cycle", **asdict(outcome), "run_id": result.run_id})
        if result.aborted and not self.stop_event.is_set():
            raise WritebackError(f"apply stopped: {result.aborted}")
        if result.failed:
            self.health.last_error = (
                f"{len(result.failed)} changes failed; see `writeback log --result error`"
            )
        self.health.changes_applied += applied
        return outcome

    def write_health(self) -> None:
        path = self.settings.service.health_file
        if not path:
            return
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(asdict(self.health)), encoding="utf-8")
        os.replace(tmp, path)

    def delay_after_failure(self) -> float:
        n = self.health.consecutive_failures
        base = self.settings.service.poll_interval * (2 ** min(n, 16))
        return float(min(self.settings.service.max_backoff, base) * random.uniform(0.8, 1.2))

    def run(self, *, once: bool = False) -> int:
        poll = self.settings.service.poll_interval
        log.info(
            "writeback service started",
            extra={
                "event": "start",
                "poll_interval": poll,
                "reconcile_interval": self.settings.service.reconcile_interval,
            },
        )
        while not self.stop_event.is_set():
            self.health.cycles += 1
            self.health.last_cycle = time.time()
            delay = poll
            try:
                self.cycle()
            except WritebackError as exc:
                self.health.consecutive_failures += 1
                self.health.last_error = str(exc)
                delay = self.delay_after_failure()
                if self.health.consecutive_failures >= QUARANTINE_AFTER:
                    self.health.status = "quarantined"
                    log.error(
                        "quarantined: %d cycles in a row failed; retrying in %.0f s. Last error: %s",
                        self.health.consecutive_failures,
                        delay,
                        exc,
                    )
                else:
                    self.health.status = "degraded"
                    log.warning(
                        "cycle failed (%d in a row); retrying in %.1f s: %s",
                        self.health.consecutive_failures,
                        delay,
                        exc,
                    )
                self._next_full = 0.0  # converge fully once the fault clears
            else:
                if self.health.consecutive_failures:
                    log.info("recovered after %d failed cycles", self.health.consecutive_failures)
                self.health.consecutive_failures = 0
                self.health.status = "ok"
                self.health.last_success = time.time()
            self.write_health()
            if once:
                break
            self.stop_event.wait(delay)
        self.health.status = "stopped"
        self.write_health()
        log.info("writeback service stopped", extra={"event": "stop"})
        return 0 if self.health.consecutive_failures == 0 else 1


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any structured extras."""

    _std = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in self._std})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def run_service(settings: Settings, *, once: bool = False, json_logs: bool = True) -> int:
    from writeback.wiring import build_engine

    if json_logs:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
    engine = build_engine(settings)
    service = Service(settings, engine)
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
    try:
        return service.run(once=once)
    finally:
        engine.directory.close()
