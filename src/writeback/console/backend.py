"""What the console needs from the running service, in one small interface.

:class:`ServiceBackend` adapts :class:`writeback.app.service.Service`: reading is done from the console's own
threads (the health values; the state store through a connection of its own per request), every engine call
(plan, provision on demand) is a job the service runs on its own thread between cycles, so the service loop
stays the engine's only user and the only writer to AD.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from writeback.adapters.state.sqlbase import SqlStore
from writeback.app import pause as pausing
from writeback.app.engine import Allowances, Engine
from writeback.app.metrics import ServiceMetrics
from writeback.app.provision import provision_group
from writeback.app.service import Service
from writeback.app.wiring import build_store
from writeback.config import Settings
from writeback.errors import StateLockedError


@dataclass
class ProvisionRun:
    """One provision-on-demand request: its steps grow while the service runs it."""

    id: str
    group: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    ok: bool | None = None
    started: float = field(default_factory=time.time)
    result: str | None = None  # success, skipped, failure (see ProvisionOutcome)
    summary: str | None = None
    run_id: str | None = None  # its provisioning-log entries

    def add(self, step: dict[str, Any]) -> None:
        self.steps.append(step)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "done": self.done,
            "ok": self.ok,
            "result": self.result,
            "summary": self.summary,
            "run_id": self.run_id,
            "log": f"/log?run={self.run_id}" if self.run_id else None,
            "started": dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat(),
            "steps": list(self.steps),
        }


class ServiceBackend:
    def __init__(self, service: Service, metrics: ServiceMetrics | None = None) -> None:
        self.service = service
        self.settings: Settings = service.settings
        self.metrics = metrics
        self.runs: dict[str, ProvisionRun] = {}
        self._lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        return asdict(self.service.health)

    @contextmanager
    def store(self) -> Iterator[SqlStore]:
        """A connection of the console's own (SQLite connections stay on the thread that made them), to the
        configured state (SQLite or PostgreSQL)."""
        store = build_store(self.settings)
        try:
            yield store
        finally:
            store.close()

    def allow(self, allowances: Allowances) -> None:
        """Exactly what `writeback allow` does (the service applies it on its next full plan), then wake it."""
        with self.store() as store:
            store.set_allowances(asdict(allowances))
        self.service.request_reconcile()

    def clear_quarantine(self) -> None:
        self.service.clear_quarantine()

    def reconcile_now(self) -> None:
        self.service.request_reconcile()

    # -- pause, resume, restart (writeback.app.pause; the flag is in the shared state) ---------------------------
    def paused(self) -> pausing.Paused | None:
        with self.store() as store:
            return pausing.paused(store)

    def pause(self, actor: str) -> tuple[pausing.Paused, bool]:
        """Pause writing to AD for ``actor`` (logged); the pause in force and whether this call started it."""
        with self.store() as store:
            done = pausing.pause(store, actor)
        self.service.note_pause(done[0])
        return done

    def resume(self, actor: str) -> pausing.Paused | None:
        """Resume writing (logged); the pause that ended, None when not paused. Wakes the service at once."""
        with self.store() as store:
            ended = pausing.resume(store, actor)
        if ended is not None:
            self.service.note_pause(None)
        return ended

    def restart(self) -> None:
        """Restart provisioning: the service's next cycle, started now, drops the replica's delta links (Graph
        is read again in full) and reconciles deeply. A standby refuses (StateLockedError)."""
        self._refuse_on_standby()
        self.service.request_restart()

    def refuse_if_paused(self) -> None:
        """PausedError while paused: provision on demand refuses before it starts."""
        with self.store() as store:
            pausing.refuse_if_paused(store)

    def call(self, job: Callable[[Engine], Any], timeout: float = 300.0) -> Any:
        """Run ``job`` on the service's thread and wait for its result. A standby runs no job (it must not
        read Graph into the shared replica, nor write): :class:`StateLockedError` names the active one."""
        self._refuse_on_standby()
        return self.service.submit(job).result(timeout=timeout)

    def _refuse_on_standby(self) -> None:
        health = self.service.health
        if health.role != "active":
            raise StateLockedError(
                f"this instance is standing by and never writes to AD ({health.message}); ask the active "
                "instance's console, or run the command on its server"
            )

    def provision(self, group: str) -> ProvisionRun:
        """Provision ``group`` on the service's thread (its pass, its writer claim). A standby never writes:
        it refuses with :class:`~writeback.errors.StateLockedError` naming the active instance."""
        self._refuse_on_standby()
        run = ProvisionRun(uuid.uuid4().hex[:12], group)
        with self._lock:
            self.runs[run.id] = run
            if len(self.runs) > 100:  # keep the latest 100
                for old in sorted(self.runs.values(), key=lambda r: r.started)[:-100]:
                    self.runs.pop(old.id, None)

        def job(engine: Engine) -> None:
            try:
                outcome = provision_group(self.service.passes, group, run.add, run_id=run.id)
                run.ok, run.result, run.summary, run.run_id = (
                    outcome.ok,
                    outcome.result,
                    outcome.summary,
                    outcome.run_id,
                )
            except Exception as exc:
                run.ok, run.result, run.summary = False, "failure", f"failed: {exc}"
                raise
            finally:
                run.done = True

        self.service.submit(job)
        return run
