"""Pause and resume: an operator stops writeback writing to AD while it keeps reading.

While paused the service still takes its Graph delta rounds (the cloud replica stays current, so nothing is
missed) but runs no pass that writes; ``writeback apply``, ``writeback provision`` and provision on demand in
the console refuse with :class:`~writeback.errors.PausedError`, which says how to resume. Dry runs (``plan``,
the console's plan page) still work. After a resume the service's next cycle is a reconcile, so every change
read meanwhile is applied.

The flag lives in the shared state (the allowances/meta port, :class:`~writeback.core.ports.AllowanceStore`),
so every HA instance, the console and the CLI see the same answer; each pause and resume is a provisioning-log
row (action ``pause`` / ``resume``, result ``info``) naming the operator in ``actor``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from writeback.app.logquery import iso_time
from writeback.core.ports import AllowanceStore, Journal, LogRecord
from writeback.errors import PausedError

PAUSED_KEY = "paused"
HOW_TO_RESUME = 'resume with "writeback resume" or the Resume button on the console\'s status page'


@dataclass(frozen=True)
class Paused:
    """Who paused writeback, and when (Unix seconds)."""

    by: str
    since: float

    def describe(self) -> str:
        return f"paused by {self.by} since {iso_time(self.since)}"

    def to_dict(self) -> dict[str, object]:
        return {"by": self.by, "since": iso_time(self.since)}


def paused(store: AllowanceStore) -> Paused | None:
    """The pause in force, or None. A value this version cannot read counts as paused by "unknown": writing
    stays stopped rather than resuming by accident."""
    raw = store.get_meta(PAUSED_KEY)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Paused(str(data["by"]), float(data["since"]))
    except (ValueError, KeyError, TypeError):
        return Paused("unknown", 0.0)


def refuse_if_paused(store: AllowanceStore) -> None:
    """Raise :class:`PausedError` while paused: the one check every pass that writes makes first."""
    p = paused(store)
    if p is not None:
        raise PausedError(
            f"writeback is {p.describe()}: it keeps reading the cloud but writes nothing to AD; {HOW_TO_RESUME}"
        )


class PauseStore(AllowanceStore, Journal, Protocol):
    """What pause and resume need of the state: its meta values and the provisioning log."""


def pause(store: PauseStore, actor: str, *, now: float | None = None) -> tuple[Paused, bool]:
    """Pause writing to AD on behalf of ``actor``. Returns the pause in force and whether this call started
    it (pausing twice keeps the first pause and logs nothing more)."""
    current = paused(store)
    if current is not None:
        return current, False
    p = Paused(actor, time.time() if now is None else now)
    store.write_meta({PAUSED_KEY: json.dumps({"by": p.by, "since": p.since})})
    detail: dict[str, object] = {
        "reason": "paused: writeback keeps reading the cloud and writes nothing to AD until resumed"
    }
    store.log_rows([LogRecord(uuid.uuid4().hex[:12], "pause", "info", detail=detail, actor=actor)])
    return p, True


def resume(store: PauseStore, actor: str) -> Paused | None:
    """Resume writing to AD; the pause that ended, or None when writeback was not paused (nothing logged)."""
    current = paused(store)
    if current is None:
        return None
    store.write_meta({PAUSED_KEY: None})
    detail: dict[str, object] = {
        "reason": "resumed: the next cycle reconciles what changed while paused",
        "paused_by": current.by,
        "paused_since": iso_time(current.since) if current.since else None,
    }
    store.log_rows([LogRecord(uuid.uuid4().hex[:12], "resume", "info", detail=detail, actor=actor)])
    return current
